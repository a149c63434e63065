package hydrillatest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/regmirror/regmirror/hydrilla"
)

// obj is a JSON object with its key order kept, so generated documents come
// out byte for byte the same every time and in the real server's key order.
type obj []kv

type kv struct {
	k string
	v any
}

// pyDumps writes v the way Python's json.dumps does: ", " and ": "
// separators on one line when indent is 0, else indent-space nesting. The
// real server and builder are Python, and the mirror must cope with (and
// keep) their formatting rather than Go's compact one.
func pyDumps(v any, indent int) []byte {
	var b bytes.Buffer
	writePy(&b, v, indent, 0)
	return b.Bytes()
}

func writePy(b *bytes.Buffer, v any, indent, depth int) {
	open := func(c byte, n int) (sep, end string) {
		b.WriteByte(c)
		if indent == 0 || n == 0 {
			return ", ", ""
		}
		pad := "\n" + strings.Repeat(" ", indent*(depth+1))
		b.WriteString(pad)
		return "," + pad, "\n" + strings.Repeat(" ", indent*depth)
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case int:
		b.WriteString(strconv.Itoa(x))
	case string:
		writeString(b, x)
	case hydrilla.Version:
		// Written as given, trailing zeros included: real items may carry
		// [2, 0] and live at ".../2".
		items := make([]any, len(x))
		for i, n := range x {
			items[i] = n
		}
		writePy(b, items, 0, depth)
	case []string:
		items := make([]any, len(x))
		for i, s := range x {
			items[i] = s
		}
		writePy(b, items, indent, depth)
	case []any:
		sep, end := open('[', len(x))
		for i, e := range x {
			if i > 0 {
				b.WriteString(sep)
			}
			writePy(b, e, indent, depth+1)
		}
		b.WriteString(end)
		b.WriteByte(']')
	case obj:
		sep, end := open('{', len(x))
		for i, e := range x {
			if i > 0 {
				b.WriteString(sep)
			}
			writeString(b, e.k)
			b.WriteString(": ")
			writePy(b, e.v, indent, depth+1)
		}
		b.WriteString(end)
		b.WriteByte('}')
	default:
		panic(fmt.Sprintf("hydrillatest: pyDumps of %T", v))
	}
}

func writeString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false) // Python does not escape <, >, &
	if err := enc.Encode(s); err != nil {
		panic(err)
	}
	b.Truncate(b.Len() - 1) // Encode's newline
}
