//! Terminal output for the CLI: tark's colour choices, applied only where a person is
//! reading; rounded, aligned tables; and escaping of text that comes from plugin manifests.

use std::fmt::Display;
use std::io::{self, IsTerminal, Write};

/// An ANSI style (tark uses the `colored` crate; plain escape codes give the same result
/// without another dependency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Headings (`=== ... ===`).
    Heading,
    /// Labels in `plugin info`.
    Bold,
    /// Plugin ids and "enabled".
    Green,
    /// "disabled".
    Red,
    /// Warnings and "Disabled plugin" ids.
    Yellow,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Heading => "\x1b[1;36m",
            Style::Bold => "\x1b[1m",
            Style::Green => "\x1b[32m",
            Style::Red => "\x1b[31m",
            Style::Yellow => "\x1b[33m",
        }
    }
}

const RESET: &str = "\x1b[0m";

/// Whether stdout gets colour: never when `NO_COLOR` is set (non-empty, see no-color.org)
/// or `TERM=dumb`; always when `CLICOLOR_FORCE` is set (non-empty, not `0`); otherwise only
/// when stdout is a terminal, so pipes and files never see escape codes.
pub fn color_wanted() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0");
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    if std::env::var_os("TERM").is_some_and(|t| t == "dumb") {
        return false;
    }
    set("CLICOLOR_FORCE") || io::stdout().is_terminal()
}

/// Locked stdout plus the colour decision, so every command prints the same way and write
/// errors (a closed pipe) propagate instead of panicking as `println!` would.
pub struct Out {
    color: bool,
    quiet: bool,
    w: io::StdoutLock<'static>,
}

impl Out {
    /// Stdout with colour decided by [`color_wanted`].
    pub fn stdout() -> Self {
        Out {
            color: color_wanted(),
            quiet: false,
            w: io::stdout().lock(),
        }
    }

    /// Drop the human-readable lines ([`Self::line`], [`Self::blank`], [`Self::heading`]):
    /// `--json` commands print only their JSON document ([`Self::json`]) on stdout.
    pub fn set_quiet(&mut self, quiet: bool) {
        self.quiet = quiet;
    }

    /// Whether human-readable lines are dropped.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// A pretty-printed JSON document, printed even when quiet.
    pub fn json(&mut self, value: &serde_json::Value) -> io::Result<()> {
        let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
        writeln!(self.w, "{text}")
    }

    /// `text` in `style` when colour is on, else unchanged.
    pub fn paint(&self, text: impl Display, style: Style) -> String {
        if self.color {
            format!("{}{text}{RESET}", style.code())
        } else {
            text.to_string()
        }
    }

    /// One line.
    pub fn line(&mut self, text: impl Display) -> io::Result<()> {
        if self.quiet {
            return Ok(());
        }
        writeln!(self.w, "{text}")
    }

    /// An empty line.
    pub fn blank(&mut self) -> io::Result<()> {
        if self.quiet {
            return Ok(());
        }
        writeln!(self.w)
    }

    /// A bold cyan heading line.
    pub fn heading(&mut self, text: &str) -> io::Result<()> {
        let painted = self.paint(text, Style::Heading);
        self.line(painted)
    }

    /// Flush (errors such as a closed pipe surface here rather than at exit).
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// Terminal-safe text: one copy, in the library (manifest errors use it too).
pub use tark_wasmer::manifest::{printable, printable_list};

/// The first `n` characters of `s` (tark's description cut-off is in characters).
pub fn first_chars(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// One table cell: plain text plus an optional style, so widths are measured without
/// escape codes.
#[derive(Debug, Clone)]
pub struct Cell {
    text: String,
    style: Option<Style>,
}

impl Cell {
    /// An unstyled cell (the text is escaped with [`printable`]).
    pub fn plain(text: impl AsRef<str>) -> Self {
        Cell {
            text: printable(text.as_ref()),
            style: None,
        }
    }

    /// A styled cell.
    pub fn styled(text: impl AsRef<str>, style: Style) -> Self {
        Cell {
            text: printable(text.as_ref()),
            style: Some(style),
        }
    }
}

/// A table in the style of tark's `tabled` output (rounded borders, a rule under the
/// header), with every column padded to its widest cell. Width is counted in characters;
/// all characters tark prints in tables are one column wide.
pub fn table(out: &Out, headers: &[&str], rows: &[Vec<Cell>]) -> Vec<String> {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(&cell.text));
        }
    }
    let rule = |left: &str, mid: &str, right: &str| {
        let parts: Vec<String> = widths
            .iter()
            .map(|w| "─".repeat(w.saturating_add(2)))
            .collect();
        format!("{left}{}{right}", parts.join(mid))
    };
    let render_row = |cells: &mut dyn Iterator<Item = (String, Option<Style>)>| {
        let mut line = String::from("│");
        for (w, (text, style)) in widths.iter().zip(cells) {
            let pad = " ".repeat(w.saturating_sub(width(&text)));
            let shown = match style {
                Some(style) => out.paint(&text, style),
                None => text,
            };
            line.push_str(&format!(" {shown}{pad} │"));
        }
        line
    };
    let mut lines = vec![rule("╭", "┬", "╮")];
    lines.push(render_row(
        &mut headers.iter().map(|h| (h.to_string(), None)),
    ));
    lines.push(rule("├", "┼", "┤"));
    for row in rows {
        lines.push(render_row(
            &mut row.iter().map(|c| (c.text.clone(), c.style)),
        ));
    }
    lines.push(rule("╰", "┴", "╯"));
    lines
}
