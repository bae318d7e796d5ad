// Package templates holds the notice email templates, embedded into the
// binary: the layout and partials that every locale shares, and one
// directory per locale (en-GB, the default, and en-US) with the locale's
// words and formats (locale.txt) and a subject, text and HTML body per
// milestone set (generic, 90, 45, 30, and after for the post-expiry notice). Package render describes the tree
// and compiles it.
package templates

import "embed"

// FS is the template tree, rooted so that its top-level directories are the
// locales and the shared files stand beside them: pass it to render.New as
// is.
//
//go:embed layout.txt layout.html partials.txt partials.html en-GB en-US
var FS embed.FS
