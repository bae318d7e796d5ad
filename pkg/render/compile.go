package render

import (
	"fmt"
	"strconv"
	"strings"
	"text/template/parse"
	"time"

	"renewals/pkg/subscription"
)

// The fast path. text/template and html/template execute a template by
// walking its parse tree and reaching every field, function and escaper
// through reflect, which made them most of a render's cost. After New has
// parsed a set (and html/template has escaped it), compile walks the same
// trees and turns each into a program of closures specialised to Data: a
// field chain becomes a direct accessor, a builtin (eq, gt, not, and, ...),
// date, weburl or one of html/template's escapers a native function with the
// standard library's exact semantics.
//
// The standard packages remain the definition of the output. compile
// supports a subset of the template language, typed statically: the type of
// dot is known at every node, so a field that does not exist, a comparison
// of different types or a function given the wrong argument is found when
// compiling. Anything outside the subset, or anything that would fail when
// executed, makes compile refuse the whole template (subject, text body or
// HTML body), and Render executes that one with the standard package as
// before, so an operator's template always renders as text/template and
// html/template define, errors included.
//
// The subset: text; comments; {{pipeline}} without variable declarations;
// if, with, else, else if, else with; {{template "name" pipeline}} without
// recursion; field chains on dot and on $; string, bool and int constants
// (written as plain integers); parenthesised pipelines; the functions eq,
// ne, lt, le, gt, ge, not, and, or, len (of a string), date and weburl; and in
// HTML templates the escapers html/template inserts for HTML text, RCDATA,
// attribute values and URLs. range, variables other than $, printf and the
// other builtins, method calls, and JS, CSS or other escaping contexts are
// left to the standard packages.

// kind is the static type of a value in a compiled template: one of the
// types Data holds.
type kind uint8

const (
	kString kind = iota + 1
	kInt
	kBool
	kDate     // subscription.Date
	kData     // Data
	kReseller // Reseller
)

var kindNames = map[kind]string{kString: "string", kInt: "int", kBool: "bool", kDate: "subscription.Date", kData: "render.Data", kReseller: "render.Reseller"}

func (k kind) String() string { return kindNames[k] }

// value is a value of a known kind: s for a string, i for an int or a bool
// (0 or 1), and a pointer into the Data being rendered for the structs.
type value struct {
	s string
	i int
	t *subscription.Date
	d *Data
	r *Reseller
}

// machine is the state of one render: the output, scratch space and the
// data. Render takes one from a pool.
type machine struct {
	buf     []byte
	scratch [64]byte // where a value is formatted to be escaped; may grow out
	data    Data
	root    value // $, the dot the current template was called with
}

// Write lets the standard packages execute into the machine's buffer.
func (m *machine) Write(p []byte) (int, error) {
	m.buf = append(m.buf, p...)
	return len(p), nil
}

// step executes one node with dot, appending its output to b. The output
// travels through the steps rather than living in the machine, so that
// appending is no store to the heap (and no GC write barrier).
type step func(m *machine, dot value, b []byte) []byte

// expr is a compiled pipeline, command or argument.
type expr struct {
	k    kind
	eval func(m *machine, dot value) value
	// print, when set, appends what printing the value writes without
	// building the value first; otherwise an action prints eval's result.
	print step
	// str, when set, appends the printed form of the value to dst, which may
	// be m.scratch; a string expression leaves it nil.
	str func(m *machine, dot value, dst []byte) []byte
	// dot says the expression is dot itself.
	dot bool
}

// program is a compiled template for dot of one kind.
type program struct {
	items []item // what steps were built from, for inlining into callers
	steps []step
}

// item is a step or text, which steps merges with the text next to it.
type item struct {
	text string
	step step // nil for text
}

func (p *program) run(m *machine, dot value, b []byte) []byte {
	for _, s := range p.steps {
		b = s(m, dot, b)
	}
	return b
}

// render executes the program with the machine's data as dot and $,
// appending to m.buf.
func (p *program) render(m *machine) {
	dot := value{d: &m.data}
	m.root = dot
	m.buf = p.run(m, dot, m.buf)
}

// unsupported is why compile refused a template.
type unsupported struct{ msg string }

func (u unsupported) Error() string { return u.msg }

type compiler struct {
	html   bool
	lookup func(name string) *parse.Tree
	progs  map[progKey]*program
	busy   map[progKey]bool // being compiled: a call back is recursion
	root   kind             // the kind of $ in the template being compiled
	tree   *parse.Tree      // for error positions
	// usesRoot is set when a template uses $: only then do template calls
	// keep machine.root, a store to the heap, up to date.
	usesRoot *bool
	// inline is set when no template mentions a variable: then
	// {{template "x" .}} splices x's steps into the caller, since $ is
	// the only thing that could tell the two apart.
	inline bool
}

type progKey struct {
	name string
	dot  kind
}

func newCompiler(html bool, lookup func(string) *parse.Tree) *compiler {
	return &compiler{html: html, lookup: lookup, progs: map[progKey]*program{}, busy: map[progKey]bool{}, usesRoot: new(bool)}
}

// compile compiles the named template for Data, or says why it cannot. A
// panic other than a refusal (a bug here) is a refusal too: the template
// then executes with its standard package, which is always correct.
func (c *compiler) compile(name string) (p *program, err error) {
	defer func() {
		if x := recover(); x != nil {
			if u, ok := x.(unsupported); ok {
				p, err = nil, u
				return
			}
			p, err = nil, fmt.Errorf("render: compiling %s: %v", name, x)
		}
	}()
	c.inline = !c.mentionsVariable(name, map[string]bool{})
	return c.program(name, kData), nil
}

// mentionsVariable reports whether the named template, or one it calls,
// mentions a variable ($ or another).
func (c *compiler) mentionsVariable(name string, seen map[string]bool) bool {
	if seen[name] {
		return false
	}
	seen[name] = true
	t := c.lookup(name)
	return t != nil && t.Root != nil && c.nodeMentionsVariable(t.Root, seen)
}

func (c *compiler) nodeMentionsVariable(n parse.Node, seen map[string]bool) bool {
	any := func(nodes ...parse.Node) bool {
		for _, n := range nodes {
			if c.nodeMentionsVariable(n, seen) {
				return true
			}
		}
		return false
	}
	switch n := n.(type) {
	case *parse.ListNode:
		return n != nil && any(n.Nodes...)
	case *parse.ActionNode:
		return any(n.Pipe)
	case *parse.IfNode:
		return any(n.Pipe, n.List, n.ElseList)
	case *parse.WithNode:
		return any(n.Pipe, n.List, n.ElseList)
	case *parse.RangeNode:
		return any(n.Pipe, n.List, n.ElseList)
	case *parse.TemplateNode:
		return any(n.Pipe) || c.mentionsVariable(n.Name, seen)
	case *parse.PipeNode:
		if n == nil {
			return false
		}
		if len(n.Decl) > 0 {
			return true
		}
		for _, cmd := range n.Cmds {
			if any(cmd) {
				return true
			}
		}
	case *parse.CommandNode:
		return any(n.Args...)
	case *parse.ChainNode:
		return any(n.Node)
	case *parse.VariableNode:
		return true
	}
	return false
}

func (c *compiler) fail(n parse.Node, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if n != nil && c.tree != nil {
		msg = location(c.tree, n) + ": " + msg
	}
	panic(unsupported{msg})
}

// location is file:line:col of n, or the file when n's position is not in
// t's text (a node html/template inserted).
func location(t *parse.Tree, n parse.Node) (loc string) {
	defer func() {
		if recover() != nil {
			loc = t.ParseName
		}
	}()
	loc, _ = t.ErrorContext(n)
	return loc
}

func (c *compiler) program(name string, dot kind) *program {
	key := progKey{name, dot}
	if p, ok := c.progs[key]; ok {
		return p
	}
	if c.busy[key] {
		c.fail(nil, "template %q calls itself", name)
	}
	t := c.lookup(name)
	if t == nil || t.Root == nil {
		c.fail(nil, "no template %q", name)
	}
	c.busy[key] = true
	savedRoot, savedTree := c.root, c.tree
	c.root, c.tree = dot, t
	p := &program{items: c.items(t.Root, dot)}
	p.steps = steps(p.items)
	c.root, c.tree = savedRoot, savedTree
	delete(c.busy, key)
	c.progs[key] = p
	return p
}

func (c *compiler) list(l *parse.ListNode, dot kind) []step {
	return steps(c.items(l, dot))
}

func (c *compiler) items(l *parse.ListNode, dot kind) []item {
	var out []item
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			out = append(out, item{text: string(n.Text)})
		case *parse.CommentNode:
		case *parse.ListNode:
			out = append(out, c.items(n, dot)...)
		case *parse.TemplateNode:
			if c.inline && n.Pipe != nil && len(n.Pipe.Decl) == 0 && len(n.Pipe.Cmds) == 1 && len(n.Pipe.Cmds[0].Args) == 1 {
				if _, ok := n.Pipe.Cmds[0].Args[0].(*parse.DotNode); ok {
					out = append(out, c.program(n.Name, dot).items...)
					continue
				}
			}
			out = append(out, item{step: c.node(n, dot)})
		default:
			out = append(out, item{step: c.node(n, dot)})
		}
	}
	return out
}

// steps turns items into steps, each run of text one append.
func steps(items []item) []step {
	var out []step
	for i := 0; i < len(items); {
		if items[i].step != nil {
			out = append(out, items[i].step)
			i++
			continue
		}
		var sb strings.Builder
		for ; i < len(items) && items[i].step == nil; i++ {
			sb.WriteString(items[i].text)
		}
		if text := sb.String(); text != "" {
			out = append(out, func(_ *machine, _ value, b []byte) []byte { return append(b, text...) })
		}
	}
	return out
}

func listStep(steps []step) step {
	switch len(steps) {
	case 0:
		return func(_ *machine, _ value, b []byte) []byte { return b }
	case 1:
		return steps[0]
	}
	return func(m *machine, dot value, b []byte) []byte {
		for _, s := range steps {
			b = s(m, dot, b)
		}
		return b
	}
}

func (c *compiler) node(n parse.Node, dot kind) step {
	switch n := n.(type) {
	case *parse.TextNode:
		text := string(n.Text)
		return func(_ *machine, _ value, b []byte) []byte { return append(b, text...) }
	case *parse.CommentNode:
		return nil
	case *parse.ListNode:
		return listStep(c.list(n, dot))
	case *parse.ActionNode:
		return c.action(n, dot)
	case *parse.IfNode:
		return c.ifOrWith(n, false, n.Pipe, n.List, n.ElseList, dot)
	case *parse.WithNode:
		return c.ifOrWith(n, true, n.Pipe, n.List, n.ElseList, dot)
	case *parse.TemplateNode:
		return c.templateCall(n, dot)
	}
	c.fail(n, "%s is not supported", n)
	return nil
}

func (c *compiler) action(n *parse.ActionNode, dot kind) step {
	if len(n.Pipe.Decl) > 0 {
		c.fail(n, "variables are not supported")
	}
	if c.html {
		// Every action html/template has escaped ends with an escaper:
		// refuse a tree that was not escaped rather than print raw values.
		last := n.Pipe.Cmds[len(n.Pipe.Cmds)-1]
		id, ok := last.Args[0].(*parse.IdentifierNode)
		if !ok || escapers[id.Ident] == nil {
			c.fail(n, "action does not end with a supported html/template escaper")
		}
	}
	e := c.pipe(n.Pipe, dot)
	if e.print != nil {
		return e.print
	}
	return printStep(c, n, e)
}

// printStep prints e's value as text/template's printValue does: fmt.Fprint
// of a string, int, bool or subscription.Date (a fmt.Stringer).
func printStep(c *compiler, n parse.Node, e expr) step {
	eval := e.eval
	switch e.k {
	case kString:
		return func(m *machine, dot value, b []byte) []byte { return append(b, eval(m, dot).s...) }
	case kInt:
		return func(m *machine, dot value, b []byte) []byte { return strconv.AppendInt(b, int64(eval(m, dot).i), 10) }
	case kBool:
		return func(m *machine, dot value, b []byte) []byte { return strconv.AppendBool(b, eval(m, dot).i != 0) }
	case kDate:
		return func(m *machine, dot value, b []byte) []byte { return append(b, eval(m, dot).t.String()...) }
	}
	c.fail(n, "printing a %s is not supported", e.k)
	return nil
}

// stringify is how fmt.Fprint, and so printValue and html/template's
// escapers, write a value of kind k.
func stringify(k kind, v value) string {
	switch k {
	case kString:
		return v.s
	case kInt:
		return strconv.Itoa(v.i)
	case kBool:
		return strconv.FormatBool(v.i != 0)
	case kDate:
		return v.t.String()
	}
	panic("render: stringify of " + k.String()) // refused when compiling
}

func printable(k kind) bool { return k == kString || k == kInt || k == kBool || k == kDate }

// truth is text/template's isTrue for a kind: a non-empty string, a non-zero
// int, true; a struct is always true.
func truth(k kind) func(value) bool {
	switch k {
	case kString:
		return func(v value) bool { return v.s != "" }
	case kInt, kBool:
		return func(v value) bool { return v.i != 0 }
	}
	return func(value) bool { return true }
}

func (c *compiler) ifOrWith(n parse.Node, with bool, pipe *parse.PipeNode, list, elseList *parse.ListNode, dot kind) step {
	if len(pipe.Decl) > 0 {
		c.fail(n, "variables are not supported")
	}
	e := c.pipe(pipe, dot)
	isTrue, eval := truth(e.k), e.eval
	inner := dot
	if with {
		inner = e.k
	}
	then := listStep(c.list(list, inner))
	otherwise := listStep(nil)
	if elseList != nil {
		otherwise = listStep(c.list(elseList, dot))
	}
	if with {
		return func(m *machine, dot value, b []byte) []byte {
			if v := eval(m, dot); isTrue(v) {
				return then(m, v, b)
			}
			return otherwise(m, dot, b)
		}
	}
	return func(m *machine, dot value, b []byte) []byte {
		if isTrue(eval(m, dot)) {
			return then(m, dot, b)
		}
		return otherwise(m, dot, b)
	}
}

func (c *compiler) templateCall(n *parse.TemplateNode, dot kind) step {
	if n.Pipe == nil {
		c.fail(n, "a template call without data is not supported")
	}
	if len(n.Pipe.Decl) > 0 {
		c.fail(n, "variables are not supported")
	}
	e := c.pipe(n.Pipe, dot)
	p := c.program(n.Name, e.k)
	eval, usesRoot := e.eval, c.usesRoot
	passDot := e.dot // {{template "x" .}}: no pipeline to evaluate
	return func(m *machine, dot value, b []byte) []byte {
		v := dot
		if !passDot {
			v = eval(m, dot)
		}
		if !*usesRoot {
			return p.run(m, v, b)
		}
		saved := m.root
		m.root = v
		b = p.run(m, v, b)
		m.root = saved
		return b
	}
}

// pipe compiles a pipeline: each command's value is the next one's final
// argument.
func (c *compiler) pipe(p *parse.PipeNode, dot kind) expr {
	if len(p.Decl) > 0 {
		c.fail(p, "variables are not supported")
	}
	var final *expr
	for _, cmd := range p.Cmds {
		e := c.command(cmd, dot, final)
		final = &e
	}
	if final == nil {
		c.fail(p, "empty pipeline")
	}
	return *final
}

func (c *compiler) command(cmd *parse.CommandNode, dot kind, final *expr) expr {
	if id, ok := cmd.Args[0].(*parse.IdentifierNode); ok {
		return c.call(id, cmd.Args[1:], final, dot)
	}
	// Anything else is not a function: text/template refuses arguments.
	if len(cmd.Args) > 1 || final != nil {
		c.fail(cmd, "%s is not a function", cmd.Args[0])
	}
	return c.operand(cmd.Args[0], dot)
}

// operand compiles a value: dot, a field chain, $, a parenthesised pipeline
// or a constant.
func (c *compiler) operand(n parse.Node, dot kind) expr {
	switch n := n.(type) {
	case *parse.DotNode:
		return expr{k: dot, eval: dotEval, dot: true}
	case *parse.FieldNode:
		return c.fields(n, expr{k: dot, eval: dotEval, dot: true}, n.Ident)
	case *parse.VariableNode:
		if n.Ident[0] != "$" {
			c.fail(n, "variables other than $ are not supported")
		}
		*c.usesRoot = true
		return c.fields(n, expr{k: c.root, eval: func(m *machine, _ value) value { return m.root }}, n.Ident[1:])
	case *parse.PipeNode:
		return c.pipe(n, dot)
	case *parse.StringNode:
		v := value{s: n.Text}
		return expr{k: kString, eval: func(*machine, value) value { return v }}
	case *parse.BoolNode:
		v := value{i: b2i(n.True)}
		return expr{k: kBool, eval: func(*machine, value) value { return v }}
	case *parse.NumberNode:
		// text/template's idealConstant: an int unless complex or written as
		// a float; anything but a plain int is refused here.
		if n.IsComplex || !n.IsInt || strings.ContainsAny(n.Text, ".eEpP") || int64(int(n.Int64)) != n.Int64 {
			c.fail(n, "number %s is not supported", n.Text)
		}
		v := value{i: int(n.Int64)}
		return expr{k: kInt, eval: func(*machine, value) value { return v }}
	}
	c.fail(n, "%s is not supported", n)
	return expr{}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func dotEval(_ *machine, dot value) value { return dot }

// fields compiles a chain of field names applied to e.
func (c *compiler) fields(n parse.Node, e expr, names []string) expr {
	for _, name := range names {
		f, ok := fieldsOf[e.k][name]
		if !ok {
			c.fail(n, "can't evaluate field %s in type %s", name, e.k)
		}
		get, prev := f.get, e.eval
		if e.dot {
			e = expr{k: f.k, eval: func(_ *machine, dot value) value { return get(dot) }}
		} else {
			e = expr{k: f.k, eval: func(m *machine, dot value) value { return get(prev(m, dot)) }}
		}
	}
	return e
}

type field struct {
	k   kind
	get func(value) value
}

// fieldsOf holds the fields of the struct kinds by name. A field missing
// here (one added to Data later) makes a template that uses it fall back.
var fieldsOf = map[kind]map[string]field{
	kData: {
		"NoticeKey":       {kString, func(v value) value { return value{s: v.d.NoticeKey} }},
		"SubscriptionID":  {kString, func(v value) value { return value{s: v.d.SubscriptionID} }},
		"Milestone":       {kInt, func(v value) value { return value{i: v.d.Milestone} }},
		"DaysLeft":        {kInt, func(v value) value { return value{i: v.d.DaysLeft} }},
		"EndDate":         {kDate, func(v value) value { return value{t: &v.d.EndDate} }},
		"Customer":        {kString, func(v value) value { return value{s: v.d.Customer} }},
		"CustomerAccount": {kString, func(v value) value { return value{s: v.d.CustomerAccount} }},
		"Product":         {kString, func(v value) value { return value{s: v.d.Product} }},
		"ContactName":     {kString, func(v value) value { return value{s: v.d.ContactName} }},
		"HasSeats":        {kBool, func(v value) value { return value{i: b2i(v.d.HasSeats)} }},
		"Seats":           {kInt, func(v value) value { return value{i: v.d.Seats} }},
		"SeatsAssigned":   {kInt, func(v value) value { return value{i: v.d.SeatsAssigned} }},
		"UnusedSeats":     {kInt, func(v value) value { return value{i: v.d.UnusedSeats} }},
		"AccessModel":     {kString, func(v value) value { return value{s: v.d.AccessModel} }},
		"Term":            {kString, func(v value) value { return value{s: v.d.Term} }},
		"Reseller":        {kReseller, func(v value) value { return value{r: &v.d.Reseller} }},
	},
	kReseller: {
		"Name":    {kString, func(v value) value { return value{s: v.r.Name} }},
		"Phone":   {kString, func(v value) value { return value{s: v.r.Phone} }},
		"Email":   {kString, func(v value) value { return value{s: v.r.Email} }},
		"Website": {kString, func(v value) value { return value{s: v.r.Website} }},
	},
}

// call compiles a function call: the arguments, then the final value from
// the pipeline, if any, as text/template passes them.
func (c *compiler) call(id *parse.IdentifierNode, argNodes []parse.Node, final *expr, dot kind) expr {
	name := id.Ident
	args := make([]expr, 0, len(argNodes)+1)
	for _, a := range argNodes {
		args = append(args, c.arg(a, dot))
	}
	if final != nil {
		args = append(args, *final)
	}
	kinds := make([]kind, len(args))
	for i, a := range args {
		kinds[i] = a.k
	}
	if esc := escapers[name]; esc != nil {
		if !c.html {
			c.fail(id, "%q is not a defined function", name)
		}
		if len(args) != 1 || !printable(args[0].k) {
			c.fail(id, "%s%v is not supported", name, kinds)
		}
		return esc(args[0])
	}
	if _, ok := funcs[name]; ok {
		switch name {
		case "date":
			if len(args) != 2 || args[0].k != kDate || args[1].k != kString {
				c.fail(id, "date%v is not supported", kinds)
			}
			return dateCall(args[0], args[1])
		case "weburl":
			if len(args) != 1 || args[0].k != kString {
				c.fail(id, "weburl%v is not supported", kinds)
			}
			a := args[0].eval
			return expr{k: kString, eval: func(m *machine, dot value) value { return value{s: weburl(a(m, dot).s)} }}
		}
		c.fail(id, "function %q is not supported", name)
	}
	switch name {
	case "eq", "ne", "lt", "le", "gt", "ge":
		return c.compare(id, name, args, kinds)
	case "not":
		if len(args) != 1 {
			c.fail(id, "not%v is not supported", kinds)
		}
		isTrue, a := truth(args[0].k), args[0].eval
		return expr{k: kBool, eval: func(m *machine, dot value) value { return value{i: b2i(!isTrue(a(m, dot)))} }}
	case "and", "or":
		// and and or return the first false (true) argument, else the last,
		// evaluating no more than they need; the result's type is static
		// only when all the arguments have one type.
		if len(args) == 0 {
			c.fail(id, "%s without arguments", name)
		}
		for _, a := range args {
			if a.k != args[0].k {
				c.fail(id, "%s%v is not supported", name, kinds)
			}
		}
		isTrue, stop := truth(args[0].k), name == "or"
		evals := make([]func(*machine, value) value, len(args))
		for i, a := range args {
			evals[i] = a.eval
		}
		return expr{k: args[0].k, eval: func(m *machine, dot value) value {
			var v value
			for _, e := range evals {
				if v = e(m, dot); isTrue(v) == stop {
					return v
				}
			}
			return v
		}}
	case "len":
		if len(args) != 1 || args[0].k != kString {
			c.fail(id, "len%v is not supported", kinds)
		}
		a := args[0].eval
		return expr{k: kInt, eval: func(m *machine, dot value) value { return value{i: len(a(m, dot).s)} }}
	}
	c.fail(id, "function %q is not supported", name)
	return expr{}
}

// arg compiles a function's argument: an operand (a value of any kind, as
// text/template passes to an interface or reflect.Value parameter; call
// checks the kinds against typed parameters).
func (c *compiler) arg(n parse.Node, dot kind) expr {
	switch n.(type) {
	case *parse.DotNode, *parse.FieldNode, *parse.VariableNode, *parse.PipeNode,
		*parse.StringNode, *parse.BoolNode, *parse.NumberNode:
		return c.operand(n, dot)
	}
	c.fail(n, "argument %s is not supported", n)
	return expr{}
}

// compare compiles eq, ne, lt, le, gt and ge for arguments of one basic
// kind, which is when text/template's versions compare without an error.
func (c *compiler) compare(id *parse.IdentifierNode, name string, args []expr, kinds []kind) expr {
	if len(args) < 2 {
		c.fail(id, "%s%v is not supported", name, kinds)
	}
	ok := len(args) == 2 || name == "eq"
	for _, a := range args {
		ok = ok && a.k == args[0].k
	}
	switch args[0].k {
	case kString, kInt:
	case kBool:
		ok = ok && (name == "eq" || name == "ne")
	default:
		ok = false
	}
	if !ok {
		c.fail(id, "%s%v is not supported", name, kinds)
	}
	if name == "eq" && len(args) > 2 {
		evals := make([]func(*machine, value) value, len(args))
		for i, a := range args {
			evals[i] = a.eval
		}
		return expr{k: kBool, eval: func(m *machine, dot value) value {
			v := evals[0](m, dot)
			for _, e := range evals[1:] {
				if w := e(m, dot); v.s == w.s && v.i == w.i {
					return value{i: 1}
				}
			}
			return value{}
		}}
	}
	a, b := args[0].eval, args[1].eval
	var cmp func(x, y value) bool
	if args[0].k == kString {
		cmp = map[string]func(x, y value) bool{
			"eq": func(x, y value) bool { return x.s == y.s },
			"ne": func(x, y value) bool { return x.s != y.s },
			"lt": func(x, y value) bool { return x.s < y.s },
			"le": func(x, y value) bool { return x.s <= y.s },
			"gt": func(x, y value) bool { return x.s > y.s },
			"ge": func(x, y value) bool { return x.s >= y.s },
		}[name]
	} else {
		cmp = map[string]func(x, y value) bool{
			"eq": func(x, y value) bool { return x.i == y.i },
			"ne": func(x, y value) bool { return x.i != y.i },
			"lt": func(x, y value) bool { return x.i < y.i },
			"le": func(x, y value) bool { return x.i <= y.i },
			"gt": func(x, y value) bool { return x.i > y.i },
			"ge": func(x, y value) bool { return x.i >= y.i },
		}[name]
	}
	return expr{k: kBool, eval: func(m *machine, dot value) value { return value{i: b2i(cmp(a(m, dot), b(m, dot)))} }}
}

// dateCall compiles the date function; printed, it formats straight into
// the output.
func dateCall(d, layout expr) expr {
	de, le := d.eval, layout.eval
	appendDate := func(m *machine, dot value, dst []byte) []byte {
		t := de(m, dot).t
		l := le(m, dot).s
		if t.IsZero() {
			return dst
		}
		return time.Date(t.Year, t.Month, t.Day, 0, 0, 0, 0, time.UTC).AppendFormat(dst, l)
	}
	return expr{
		k: kString,
		eval: func(m *machine, dot value) value {
			t := de(m, dot).t
			return value{s: date(*t, le(m, dot).s)}
		},
		print: appendDate,
		str:   appendDate,
	}
}

// escapers holds html/template's escapers that the fast path implements,
// each compiling a call with one argument.
var escapers = map[string]func(a expr) expr{
	"_html_template_htmlescaper":    htmlEscaperCall,
	"_html_template_attrescaper":    htmlEscaperCall, // the same for plain content
	"_html_template_rcdataescaper":  htmlEscaperCall, // the same for plain content
	"_html_template_nospaceescaper": stringEscaperCall(nospaceEscape),
	"_html_template_urlfilter":      stringEscaperCall(urlFilter),
	"_html_template_urlnormalizer":  stringEscaperCall(func(s string) string { return urlProcess(true, s) }),
	"_html_template_urlescaper":     stringEscaperCall(func(s string) string { return urlProcess(false, s) }),
	"_html_template_commentescaper": stringEscaperCall(func(string) string { return "" }),
}

func htmlEscaperCall(a expr) expr {
	k, eval, str := a.k, a.eval, a.str
	e := expr{k: kString, eval: func(m *machine, dot value) value {
		return value{s: htmlEscapeString(stringify(k, eval(m, dot)))}
	}}
	switch {
	case str != nil:
		e.print = func(m *machine, dot value, b []byte) []byte {
			return appendHTMLEscaped(b, str(m, dot, m.scratch[:0]))
		}
	case k == kString:
		e.print = func(m *machine, dot value, b []byte) []byte { return appendHTMLEscaped(b, eval(m, dot).s) }
	case k == kInt:
		// Digits and '-' are never escaped.
		e.print = func(m *machine, dot value, b []byte) []byte { return strconv.AppendInt(b, int64(eval(m, dot).i), 10) }
	default:
		e.print = func(m *machine, dot value, b []byte) []byte { return appendHTMLEscaped(b, stringify(k, eval(m, dot))) }
	}
	return e
}

func stringEscaperCall(f func(string) string) func(a expr) expr {
	return func(a expr) expr {
		k, eval := a.k, a.eval
		return expr{k: kString, eval: func(m *machine, dot value) value {
			return value{s: f(stringify(k, eval(m, dot)))}
		}}
	}
}
