// Package fastgen writes a grammar's cli.Fast table as Go source from
// kong's own model of it, and compares the fast path with kong. Only
// tests import it: the binaries carry the generated table, not kong's
// model-building.
package fastgen

import (
	"bytes"
	"errors"
	"fmt"
	"go/format"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"github.com/selfheal/selfheal/internal/cli"
)

// Spec names what Source writes.
type Spec struct {
	Package     string     // the generated file's package
	Type        string     // T of cli.Fast[T], as the package names it
	Var         string     // the generated variable
	GeneratedBy string     // the command that writes the file
	Command     string     // the subcommand's name, "" for none
	Node        *kong.Node // kong's model of T: the application or one command
	Target      any        // a pointer to the T the model was built on
}

// Source renders s as a cli.Fast[T] variable. It reads the tags as kong
// read them (names, shorts, defaults after interpolation, enums) and
// refuses every flag feature the fast path does not model (env, xor,
// aliases, negation, a type it cannot set...), each an error.
func Source(s Spec) ([]byte, error) {
	paths := fieldPaths(reflect.ValueOf(s.Target).Elem(), "f")
	var errs []error
	where := func(v *kong.Value) (string, bool) {
		p, ok := paths[key{v.Target.Addr().Pointer(), v.Target.Type()}]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: not a field of %s", v.Name, s.Type))
		}
		return p, ok
	}
	var flags, defs, args strings.Builder
	usesTime := false
	for _, kf := range s.Node.Flags {
		typ := kf.Target.Type()
		if kf.Name == "help" || typ == reflect.TypeFor[kong.VersionFlag]() {
			continue // they print and exit: kong's
		}
		path, ok := where(kf.Value)
		if !ok {
			continue
		}
		if len(kf.Envs) > 0 || len(kf.Xor) > 0 || len(kf.And) > 0 || len(kf.LastWins) > 0 || len(kf.Aliases) > 0 ||
			kf.Tag.Negatable != "" || kf.PassthroughMode != 0 || kf.Format != "" {
			errs = append(errs, fmt.Errorf("--%s uses a kong feature the fast path does not model", kf.Name))
			continue
		}
		counter, split := false, false
		switch {
		case kf.Tag.Type == "counter" && typ == reflect.TypeFor[int]():
			counter = true
		case kf.Tag.Type != "":
			errs = append(errs, fmt.Errorf("--%s: type %q", kf.Name, kf.Tag.Type))
			continue
		case typ == reflect.TypeFor[[]string]() && kf.Tag.Sep == -1:
		case typ == reflect.TypeFor[[]string]() && kf.Tag.Sep == ',':
			split = true
		case typ == reflect.TypeFor[string](), typ == reflect.TypeFor[*string](), typ == reflect.TypeFor[int](),
			typ == reflect.TypeFor[bool](), typ == reflect.TypeFor[time.Duration]():
		default:
			errs = append(errs, fmt.Errorf("--%s: the fast path cannot set a %s with sep %q", kf.Name, typ, kf.Tag.Sep))
			continue
		}
		fmt.Fprintf(&flags, "\t\t{Name: %q, ", kf.Name)
		if kf.Short != 0 {
			fmt.Fprintf(&flags, "Short: %q, ", string(kf.Short))
		}
		if counter {
			flags.WriteString("Counter: true, ")
		}
		if kf.Required {
			flags.WriteString("Required: true, ")
		}
		if split {
			flags.WriteString("Split: true, ")
		}
		if kf.Enum != "" {
			fmt.Fprintf(&flags, "Enum: %#v, ", kf.EnumSlice())
		}
		fmt.Fprintf(&flags, "Ptr: func(f *%s) any { return &%s }},\n", s.Type, path)
		if kf.HasDefault {
			lit, err := literal(typ, kf.Default)
			if err != nil {
				errs = append(errs, fmt.Errorf("--%s: default: %w", kf.Name, err))
				continue
			}
			usesTime = usesTime || typ == reflect.TypeFor[time.Duration]()
			fmt.Fprintf(&defs, "\t\t%s = %s\n", path, lit)
		}
	}
	for _, p := range s.Node.Positional {
		path, ok := where(p)
		if !ok {
			continue
		}
		if p.Target.Type() != reflect.TypeFor[string]() || !p.Required || p.HasDefault || p.Enum != "" || p.PassthroughMode != 0 ||
			p.Tag.Type != "" || len(p.Tag.Envs) > 0 {
			errs = append(errs, fmt.Errorf("argument %s: only required plain strings with no default, enum or env", p.Name))
			continue
		}
		fmt.Fprintf(&args, "\t\tfunc(f *%s) *string { return &%s },\n", s.Type, path)
	}
	// A parent's flags may follow the command; the fast path knows only
	// help and version of them (and declines both).
	for n := s.Node.Parent; n != nil; n = n.Parent {
		for _, kf := range n.Flags {
			if kf.Name != "help" && kf.Target.Type() != reflect.TypeFor[kong.VersionFlag]() {
				errs = append(errs, fmt.Errorf("--%s of %s: a parent's flag the fast path does not read", kf.Name, n.Name))
			}
		}
	}
	if len(s.Node.Children) != 0 {
		errs = append(errs, errors.New("the grammar has subcommands: give the node of one"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	command, positional := "", ""
	if s.Command != "" {
		command = fmt.Sprintf("\tCommand: %q,\n", s.Command)
	}
	if args.Len() > 0 {
		positional = fmt.Sprintf("\tArgs: []func(*%s) *string{\n%s\t},\n", s.Type, args.String())
	}
	imports := `import "github.com/selfheal/selfheal/internal/cli"`
	if usesTime {
		imports = "import (\n\t\"time\"\n\n\t\"github.com/selfheal/selfheal/internal/cli\"\n)"
	}
	src := fmt.Sprintf(`// Code generated by %[1]s; DO NOT EDIT.

package %[2]s

%[3]s

// %[4]s is kong's model of %[5]s as Go code, so that the fast path does no
// reflection at start-up.
var %[4]s = cli.Fast[%[5]s]{
%[6]s	Flags: []cli.FastFlag[%[5]s]{
%[7]s	},
%[8]s	Defaults: func(f *%[5]s) {
%[9]s	},
}
`, s.GeneratedBy, s.Package, imports, s.Var, s.Type, command, flags.String(), positional, defs.String())
	out, err := format.Source([]byte(src))
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, src)
	}
	return out, nil
}

// literal is Go for kong's default def of a typ.
func literal(typ reflect.Type, def string) (string, error) {
	switch typ {
	case reflect.TypeFor[string]():
		return fmt.Sprintf("%q", def), nil
	case reflect.TypeFor[int]():
		var n int
		if _, err := fmt.Sscan(def, &n); err != nil || fmt.Sprint(n) != def {
			return "", fmt.Errorf("%q is not an int", def)
		}
		return fmt.Sprint(n), nil
	case reflect.TypeFor[time.Duration]():
		d, err := time.ParseDuration(def)
		if err != nil {
			return "", err
		}
		if d%time.Second == 0 {
			return fmt.Sprintf("%d * time.Second", d/time.Second), nil
		}
		return fmt.Sprintf("time.Duration(%d)", d), nil
	}
	return "", fmt.Errorf("the fast path sets no default for a %s", typ)
}

type key struct {
	ptr uintptr
	typ reflect.Type
}

// fieldPaths maps each field of v, embedded structs' included, to its Go
// selector from sel. An embedded struct and its first field share an
// address, so the type is part of the key.
func fieldPaths(v reflect.Value, sel string) map[key]string {
	out := map[key]string{}
	for i := range v.NumField() {
		f, sf := v.Field(i), v.Type().Field(i)
		p := sel + "." + sf.Name
		out[key{f.Addr().Pointer(), f.Type()}] = p
		if f.Kind() == reflect.Struct {
			for k, q := range fieldPaths(f, p) {
				out[k] = q
			}
		}
	}
	return out
}

// Compare parses args with the fast path and, when it takes them, with
// kong: taken says whether the fast path took them, err what differs.
func Compare[T any](fast *cli.Fast[T], slow func([]string) (T, error), args []string) (taken bool, err error) {
	var f T
	if !fast.Parse(args, &f) {
		return false, nil
	}
	k, kerr := slow(args)
	if kerr != nil {
		return true, fmt.Errorf("%q: the fast path took what kong rejects: %v", args, kerr)
	}
	if !reflect.DeepEqual(f, k) {
		return true, fmt.Errorf("%q:\nfast %+v\nkong %+v", args, f, k)
	}
	return true, nil
}

// Forms are the plain forms of each flag of fast, each appended to base
// (a command line the fast path takes: the command, required flags and
// arguments): --name VALUE, --name=VALUE, the flag twice, -x VALUE, and a
// counter's -x, -xx. A form that parses to what base does put the flag
// nowhere.
func Forms[T any](fast *cli.Fast[T], base []string) [][]string {
	var out [][]string
	var probe T
	for _, f := range fast.Flags {
		long, short := "--"+f.Name, "-"+f.Short
		first, val := "1", "x" // given twice, the last wins
		switch f.Ptr(&probe).(type) {
		case *int:
			val = "8080"
		case *time.Duration:
			first, val = "1s", "7s"
		}
		if f.Enum != nil {
			first, val = f.Enum[0], f.Enum[len(f.Enum)-1]
		}
		var forms [][]string
		switch _, isBool := f.Ptr(&probe).(*bool); {
		case isBool:
			forms = [][]string{{long}}
			if f.Short != "" {
				forms = append(forms, []string{short})
			}
		case f.Counter:
			forms = [][]string{{long}, {long, long}}
			if f.Short != "" {
				forms = append(forms, []string{short}, []string{short + f.Short}, []string{short + f.Short + f.Short, long})
			}
		default:
			forms = [][]string{{long, val}, {long + "=" + val}, {long, first, long, val}}
			if f.Short != "" {
				forms = append(forms, []string{short, val})
			}
		}
		for _, fm := range forms {
			out = append(out, append(slices.Clone(base), fm...))
		}
	}
	return out
}

// UpToDate fails t unless the file at path holds want; with update it
// writes want there instead.
func UpToDate(t testing.TB, path string, want []byte, update bool, how string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if bytes.Equal(got, want) {
		return
	}
	if update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Errorf("%s is stale: %s\nwant:\n%s", path, how, want)
}
