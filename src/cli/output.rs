//! Terminal output for the CLI: tark's colour choices, applied only where a person is
//! reading; rounded, aligned tables sized to the terminal, tab-separated lines when stdout
//! is not a terminal (scripts); and escaping of text that comes from plugin manifests.

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
    terminal: bool,
    /// Lines held back by [`Out::narrate`] until the command succeeds.
    held: Option<Vec<u8>>,
    w: io::StdoutLock<'static>,
}

/// Width assumed for tables when the terminal does not say (and `COLUMNS` is unset).
const DEFAULT_WIDTH: usize = 100;

impl Out {
    /// Stdout with colour decided by [`color_wanted`].
    pub fn stdout() -> Self {
        Out {
            color: color_wanted(),
            quiet: false,
            terminal: io::stdout().is_terminal(),
            held: None,
            w: io::stdout().lock(),
        }
    }

    /// Whether a person reads stdout (a terminal): tables then; tab-separated lines for
    /// pipes and files, so `cut -f1` works and nothing is cut.
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// Columns of the terminal on stdout (the tty's size, else `COLUMNS`, else 100).
    pub fn width(&self) -> usize {
        if let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size() {
            if w > 0 {
                return usize::from(w);
            }
        }
        std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse::<usize>().ok())
            .filter(|&c| c > 0)
            .unwrap_or(DEFAULT_WIDTH)
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

    /// Run `f`, a command that narrates a change (`plugin add`, `plugin update`). On a
    /// terminal its lines appear as they happen (progress, the question before installing);
    /// piped, they are held and printed only if `f` succeeds, so a failed command leaves
    /// stdout empty and says why on stderr alone.
    pub fn narrate<T>(
        &mut self,
        f: impl FnOnce(&mut Out) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        if self.terminal {
            return f(self);
        }
        self.held = Some(Vec::new());
        let result = f(self);
        let held = self.held.take().unwrap_or_default();
        if result.is_ok() {
            self.w.write_all(&held)?;
        }
        result
    }

    /// Where lines go: the held buffer inside [`Out::narrate`], else stdout.
    fn sink(&mut self) -> &mut dyn Write {
        match &mut self.held {
            Some(held) => held,
            None => &mut self.w,
        }
    }

    /// A pretty-printed JSON document, printed even when quiet.
    pub fn json(&mut self, value: &serde_json::Value) -> io::Result<()> {
        let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
        writeln!(self.sink(), "{text}")
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
        writeln!(self.sink(), "{text}")
    }

    /// An empty line.
    pub fn blank(&mut self) -> io::Result<()> {
        if self.quiet {
            return Ok(());
        }
        writeln!(self.sink())
    }

    /// A bold cyan heading line.
    pub fn heading(&mut self, text: &str) -> io::Result<()> {
        let painted = self.paint(text, Style::Heading);
        self.line(painted)
    }

    /// Bytes as they are (generated completion scripts, man pages), printed even when quiet.
    pub fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.w.write_all(bytes)
    }

    /// Flush (errors such as a closed pipe surface here rather than at exit).
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// Terminal-safe text: one copy, in the library (manifest errors use it too).
pub use tark_wasmer::manifest::{printable, printable_list};

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

/// `text` cut to `max` characters, the last one an ellipsis when anything was cut.
pub fn ellipsize(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// Rows as tab-separated lines (no header, no styling): the output for pipes. Tabs and
/// newlines inside a cell become spaces so each row stays one line of fields.
pub fn tsv(rows: &[Vec<Cell>]) -> Vec<String> {
    rows.iter()
        .map(|row| {
            row.iter()
                .map(|c| c.text.replace(['\t', '\n', '\r'], " "))
                .collect::<Vec<_>>()
                .join("\t")
        })
        .collect()
}

/// Rows as plain aligned columns under a header line (no borders, no styling, nothing
/// cut): readable in a log or a pipe, for outputs people read more than scripts parse.
pub fn columns(headers: &[&str], rows: &[Vec<Cell>]) -> Vec<String> {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(&cell.text));
        }
    }
    let render = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(width(c)))))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut lines = vec![render(headers.to_vec())];
    for row in rows {
        lines.push(render(row.iter().map(|c| c.text.as_str()).collect()));
    }
    lines
}

/// A table in the style of tark's `tabled` output (rounded borders, a rule under the
/// header), with every column padded to its widest cell, fitted to the terminal's width
/// ([`Out::width`]) by cutting the last column (descriptions) with an ellipsis. Width is
/// counted in characters; all characters tark prints in tables are one column wide.
pub fn table(out: &Out, headers: &[&str], rows: &[Vec<Cell>]) -> Vec<String> {
    table_fitted(out, headers, rows, out.width())
}

/// [`table`] for an explicit total width.
pub fn table_fitted(out: &Out, headers: &[&str], rows: &[Vec<Cell>], total: usize) -> Vec<String> {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(&cell.text));
        }
    }
    // Each column takes its width plus 3 (" x │"), plus the left border.
    let used: usize = widths.iter().map(|w| w + 3).sum::<usize>() + 1;
    if used > total {
        if let Some(last) = widths.last_mut() {
            let header_min = headers.last().map_or(1, |h| width(h));
            *last = last.saturating_sub(used - total).max(header_min);
        }
    }
    let last_col = widths.len().saturating_sub(1);
    let last_width = widths.last().copied().unwrap_or(0);
    let rows: Vec<Vec<Cell>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == last_col {
                        Cell {
                            text: ellipsize(&c.text, last_width),
                            style: c.style,
                        }
                    } else {
                        c.clone()
                    }
                })
                .collect()
        })
        .collect();
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
    for row in &rows {
        lines.push(render_row(
            &mut row.iter().map(|c| (c.text.clone(), c.style)),
        ));
    }
    lines.push(rule("╰", "┴", "╯"));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ellipsis_only_when_cut() {
        assert_eq!(ellipsize("abcdef", 6), "abcdef");
        assert_eq!(ellipsize("abcdef", 4), "abc…");
        assert_eq!(ellipsize("abcdef", 0), "");
    }

    #[test]
    fn tsv_keeps_one_line_per_row() {
        let rows = vec![vec![Cell::plain("a"), Cell::plain("b c")]];
        assert_eq!(tsv(&rows), vec!["a\tb c".to_string()]);
    }
}
