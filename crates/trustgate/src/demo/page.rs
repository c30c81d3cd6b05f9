//! The demo page, compiled into the binary: plain HTML, CSS and JS, no build step.

pub(crate) const HTML: &str = include_str!("page.html");
pub(crate) const CSS: &str = include_str!("page.css");
pub(crate) const JS: &str = include_str!("page.js");
pub(crate) const FAVICON: &str = include_str!("favicon.svg");
