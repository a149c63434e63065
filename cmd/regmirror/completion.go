package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// completionCommand is `regmirror completion bash|zsh|fish`. The bash and zsh
// scripts ask the binary itself for candidates (cli's --generate-bash-completion),
// so they follow the commands and flags of the installed version; the fish
// script is generated from the app.
func completionCommand() *cli.Command {
	return &cli.Command{
		Name:  "completion",
		Usage: "print a shell completion script (bash, zsh or fish)",
		UsageText: "regmirror completion bash|zsh|fish\n\n" +
			"   bash: source <(regmirror completion bash)    or save it as /usr/share/bash-completion/completions/regmirror\n" +
			"   zsh:  regmirror completion zsh > \"${fpath[1]}/_regmirror\"\n" +
			"   fish: regmirror completion fish > ~/.config/fish/completions/regmirror.fish",
		BashComplete: func(c *cli.Context) {
			if c.NArg() == 0 {
				fmt.Fprintln(c.App.Writer, "bash\nzsh\nfish")
			}
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("completion: name one shell: bash, zsh or fish")
			}
			var script string
			switch shell := c.Args().First(); shell {
			case "bash":
				script = bashCompletion
			case "zsh":
				script = zshCompletion
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return fmt.Errorf("completion: %w", err)
				}
				script = fishFileFlags(s)
			default:
				return fmt.Errorf("completion: %q: want bash, zsh or fish", shell)
			}
			_, err := fmt.Fprint(c.App.Writer, script)
			return err
		},
	}
}

// fishFileFlags lets fish complete file names after the flags that take a
// path (cli marks every other flag "-f", no files).
func fishFileFlags(script string) string {
	lines := strings.Split(script, "\n")
	for i, l := range lines {
		for _, f := range []string{"config", "data", "tls-cert", "tls-key", "upstream-ca"} {
			if strings.Contains(l, " -l "+f+" ") {
				lines[i] = strings.Replace(l, " -f -l ", " -F -l ", 1)
			}
		}
	}
	return strings.Join(lines, "\n")
}

const bashCompletion = `# bash completion for regmirror
_regmirror_complete() {
  local cur words cword opts
  COMPREPLY=()
  if declare -F _init_completion >/dev/null 2>&1; then
    _init_completion -n "=:" || return
  else
    cur="${COMP_WORDS[COMP_CWORD]}"
    words=("${COMP_WORDS[@]}")
    cword=$COMP_CWORD
  fi
  words=("${words[@]:0:$cword}")
  if [[ "$cur" == -* ]]; then
    opts=$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
  return 0
}
complete -o bashdefault -o default -o nospace -F _regmirror_complete regmirror
`

const zshCompletion = `#compdef regmirror
# zsh completion for regmirror
_regmirror() {
  local -a opts
  local cur
  cur=${words[-1]}
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
if [[ "$funcstack[1]" == "_regmirror" ]]; then
  _regmirror "$@"
else
  compdef _regmirror regmirror
fi
`
