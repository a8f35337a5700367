package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/latchd/latch/client"
)

func txnCommand(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "txn [OP...]",
		Short: "apply several checks and writes atomically, or read several nodes at one moment",
		Long: `txn applies a list of operations as one atomic transaction: either every check
holds and every write succeeds, or nothing changes. The operations come from
the arguments, one per argument, or else from --file or stdin, one per line
(blank lines and lines starting with # are skipped):

  exists [--if-gen N] PATH       PATH exists (with content generation N)
  missing PATH                   PATH does not exist
  held SEQUENCER                 the lock grant SEQUENCER is still current
  put [-p] [-e] [--if-gen N] PATH VALUE
  create [-p] [-e] [-s] PATH VALUE
  rm [-r] [--if-gen N] PATH
  get PATH                       read PATH (only with checks and other gets)

-p creates missing parents, -e makes an ephemeral node (deleted when this
command's session ends, which is when txn exits), -s makes a sequential
name, -r deletes a subtree. A VALUE or PATH with spaces is written as a
double-quoted Go string ("a b\n"). Later operations see what earlier ones
wrote. A txn of checks and gets only is a read of several nodes as of one
moment (the leader answers it without a log write); gets cannot be mixed
with writes.

Prints one line per operation on success (the path written or read and its
content generation; a get also prints the content as a Go string), or nothing applied and an error naming the operation that
failed, with the exit code of that failure (4 for a failed check or a
generation mismatch, 3 for a missing node, 5 for a sequencer no longer
held).`,
		Example: `  latch txn 'exists --if-gen 3 /cfg/app' 'put /cfg/app v2' 'put -p /cfg/history/4 v1'
  latch txn 'held latch-seq:v1:ex:7:12:/ls/app/leader' 'put /ls/app/state "epoch 7"'
  latch txn 'get /cfg/app' 'get /cfg/db' 'exists /cfg/ready'
  latch txn < ops.txt`,
		RunE: func(cmd *cobra.Command, args []string) error {
			lines := args
			if len(args) == 0 {
				var r io.Reader = g.env.Stdin
				if file != "" {
					f, err := os.Open(file)
					if err != nil {
						return usagef("txn: %v", err)
					}
					defer f.Close()
					r = f
				}
				var err error
				if lines, err = readTxnLines(r); err != nil {
					return err
				}
			} else if file != "" {
				return usagef("txn: give the operations as arguments or with --file, not both")
			}
			ops, texts, err := parseTxn(lines)
			if err != nil {
				return err
			}
			return g.do(cmd, func(ctx context.Context, c *client.Client) error {
				res, err := c.Txn(ctx, ops...)
				if te := (*client.TxnError)(nil); errors.As(err, &te) && te.Op < len(texts) {
					return fmt.Errorf("nothing applied: op %d (%s) failed: %w", te.Op+1, texts[te.Op], te.Err)
				}
				if err != nil {
					return err
				}
				return printTxn(g, texts, res)
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "read the operations from FILE (one per line) instead of stdin")
	return cmd
}

// readTxnLines reads the operations of a txn, one per line, skipping blank
// lines and comments.
func readTxnLines(r io.Reader) ([]string, error) {
	var lines []string
	sc := bufio.NewScanner(io.LimitReader(r, maxStdin+1))
	sc.Buffer(make([]byte, 64<<10), maxStdin+1)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the operations: %w", err)
	}
	if len(lines) == 0 {
		return nil, usagef("txn: no operations (give them as arguments, with --file, or on stdin)")
	}
	return lines, nil
}

// parseTxn turns each line into an op; texts are the lines as given, for
// messages.
func parseTxn(lines []string) ([]client.TxnOp, []string, error) {
	ops := make([]client.TxnOp, len(lines))
	get, write := 0, 0
	for i, l := range lines {
		op, err := parseTxnOp(l)
		if err != nil {
			return nil, nil, usagef("txn: op %d (%s): %v", i+1, l, err)
		}
		ops[i] = op
		switch strings.Fields(l)[0] {
		case "get":
			get = i + 1
		case "put", "create", "rm":
			write = i + 1
		}
	}
	if get > 0 && write > 0 {
		return nil, nil, usagef("txn: op %d (%s) reads and op %d (%s) writes: gets go with checks and other gets only",
			get, lines[get-1], write, lines[write-1])
	}
	return ops, lines, nil
}

// txnVerbs are the operations of a txn line: the flags each takes and
// how many arguments.
var txnVerbs = map[string]struct {
	flags string
	args  int
}{
	"exists": {"if-gen", 1}, "missing": {"", 1}, "held": {"", 1},
	"put": {"parents ephemeral if-gen", 2}, "create": {"parents ephemeral sequential", 2}, "rm": {"recursive if-gen", 1},
	"get": {"", 1},
}

// parseTxnOp parses one line of a txn.
func parseTxnOp(line string) (client.TxnOp, error) {
	words, err := splitWords(line)
	if err != nil {
		return client.TxnOp{}, err
	}
	if len(words) == 0 {
		return client.TxnOp{}, errors.New("empty")
	}
	fs := pflag.NewFlagSet(words[0], pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	gen := fs.Uint64("if-gen", 0, "")
	parents := fs.BoolP("parents", "p", false, "")
	ephemeral := fs.BoolP("ephemeral", "e", false, "")
	sequential := fs.BoolP("sequential", "s", false, "")
	recursive := fs.BoolP("recursive", "r", false, "")
	if err := fs.Parse(words[1:]); err != nil {
		return client.TxnOp{}, err
	}
	verb, known := txnVerbs[words[0]]
	if !known {
		return client.TxnOp{}, fmt.Errorf("unknown operation %q (want exists, missing, held, put, create, rm or get)", words[0])
	}
	var bad error
	fs.Visit(func(f *pflag.Flag) {
		if !strings.Contains(" "+verb.flags+" ", " "+f.Name+" ") && bad == nil {
			bad = fmt.Errorf("%s takes no --%s", words[0], f.Name)
		}
	})
	if bad != nil {
		return client.TxnOp{}, bad
	}
	var opts []client.Option
	if fs.Changed("if-gen") {
		if *gen == 0 {
			return client.TxnOp{}, errors.New("--if-gen must be at least 1")
		}
		opts = append(opts, client.IfGeneration(*gen))
	}
	for _, f := range []struct {
		on  bool
		opt client.Option
	}{{*parents, client.CreateParents()}, {*ephemeral, client.Ephemeral()}, {*sequential, client.Sequential()}, {*recursive, client.Recursive()}} {
		if f.on {
			opts = append(opts, f.opt)
		}
	}
	args := fs.Args()
	if len(args) != verb.args {
		return client.TxnOp{}, fmt.Errorf("%s wants %d argument(s), got %d", words[0], verb.args, len(args))
	}
	switch words[0] {
	case "exists":
		return client.IfExists(args[0], opts...), nil
	case "missing":
		return client.IfMissing(args[0]), nil
	case "held":
		seq, err := client.ParseSequencer(args[0])
		if err != nil {
			return client.TxnOp{}, err
		}
		return client.IfHeld(seq), nil
	case "put":
		return client.OpPut(args[0], []byte(args[1]), opts...), nil
	case "create":
		return client.OpCreate(args[0], []byte(args[1]), opts...), nil
	case "get":
		return client.OpGet(args[0]), nil
	default: // rm
		return client.OpDelete(args[0], opts...), nil
	}
}

// splitWords splits a line at spaces; a word that starts with a double
// quote is a Go string literal and may hold spaces and escapes.
func splitWords(line string) ([]string, error) {
	var words []string
	for {
		line = strings.TrimLeftFunc(line, unicode.IsSpace)
		if line == "" {
			return words, nil
		}
		if line[0] == '"' {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				return nil, fmt.Errorf("bad quoted string at %q", line)
			}
			w, _ := strconv.Unquote(q)
			words = append(words, w)
			line = line[len(q):]
			if line != "" && !unicode.IsSpace(rune(line[0])) {
				return nil, fmt.Errorf("no space after the quoted string %s", q)
			}
			continue
		}
		end := strings.IndexFunc(line, unicode.IsSpace)
		if end < 0 {
			end = len(line)
		}
		words = append(words, line[:end])
		line = line[end:]
	}
}

// TxnResultJSON is one op's result in `txn -o json`.
type TxnResultJSON struct {
	Op   string    `json:"op"`
	Stat *StatJSON `json:"stat,omitempty"`
	// Data is a get's content if it is valid UTF-8; DataBase64 otherwise.
	Data       *string `json:"data,omitempty"`
	DataBase64 string  `json:"dataBase64,omitempty"`
}

func printTxn(g *globals, texts []string, res []client.TxnResult) error {
	if g.json() {
		out := make([]TxnResultJSON, len(res))
		for i, r := range res {
			out[i] = TxnResultJSON{Op: texts[i]}
			if r.Stat.Instance != 0 {
				s := statJSON(r.Path, r.Stat)
				out[i].Stat = &s
			}
			if isGet(texts[i]) {
				out[i].Data, out[i].DataBase64 = dataJSON(r.Content)
			}
		}
		return g.printJSON(map[string]any{"applied": true, "results": out})
	}
	for i, r := range res {
		switch {
		case isGet(texts[i]):
			fmt.Fprintf(g.env.Stdout, "ok  %s  -> %s gen %d: %s\n", texts[i], r.Path, r.Stat.ContentGen, strconv.Quote(string(r.Content)))
		case r.Stat.Instance != 0:
			fmt.Fprintf(g.env.Stdout, "ok  %s  -> %s gen %d\n", texts[i], r.Path, r.Stat.ContentGen)
		default:
			fmt.Fprintf(g.env.Stdout, "ok  %s\n", texts[i])
		}
	}
	return nil
}

// isGet reports whether the txn line text is a get.
func isGet(text string) bool {
	w := strings.Fields(text)
	return len(w) > 0 && w[0] == "get"
}
