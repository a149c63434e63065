// Command tool holds the small clients of the benchmark suite (bench/run.sh):
//
//	tool ports N                         print N free TCP ports on 127.0.0.1
//	tool wait -url U [-timeout D]        wait until U answers 200
//	tool stampede -url U -n 200 [-count-url C] [-out F]
//	                                     N concurrent first GETs of one URL, released
//	                                     together; time until the last body is read
//	tool fetch -base U -list L [-prefix P] [-c 16] [-rounds 2] [-out F]
//	                                     GET every path of list L (a file or a URL)
//	tool startup -ready U [-timeout D] [-out F] -- CMD ARGS…
//	                                     start CMD, time until U answers 200, read its
//	                                     VmHWM/VmRSS, stop it
//	tool run [-out F] -- CMD ARGS…       run CMD; wall time, peak RSS (getrusage), exit code
//	tool mem -pid P [-out F]             VmHWM and VmRSS of a process
//	tool idle -pid P [-timeout D]        wait until a process's CPU use settles
//	tool report -dir OUT                 the results table (markdown) of a run
//
// Every result is a JSON object, written to -out (and stdout).
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmds := map[string]func([]string) error{
		"ports":    cmdPorts,
		"wait":     cmdWait,
		"stampede": cmdStampede,
		"fetch":    cmdFetch,
		"startup":  cmdStartup,
		"run":      cmdRun,
		"report":   cmdReport,
		"mem":      cmdMem,
		"idle":     cmdIdle,
	}
	fn, ok := cmds[os.Args[1]]
	if !ok {
		usage()
	}
	if err := fn(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "tool %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: tool ports|wait|stampede|fetch|startup|run|mem|idle|report [flags]")
	os.Exit(2)
}
