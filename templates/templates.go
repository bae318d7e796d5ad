// Package templates holds the notice email templates, embedded into the
// binary: one directory per locale (en-GB, the default, and en-US), each
// with a shared layout and partials and a subject, text and HTML body per
// milestone set (generic, 90, 45, 30). Package render describes the layout
// and compiles them.
package templates

import "embed"

// FS is the template tree, rooted so that its top-level directories are the
// locales: pass it to render.New as is.
//
//go:embed en-GB en-US
var FS embed.FS
