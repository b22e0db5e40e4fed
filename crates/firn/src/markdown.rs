//! Markdown laid out for a terminal, for the repl's `:doc`: the layout CppNix gets from
//! lowdown's terminal output. Text is indented by four spaces and paragraphs are filled to
//! the width (a hard line break, a backslash at the end of a line, is kept); a code block
//! keeps its lines, each marked `| ` two columns further in; a list item starts with `· `
//! (or its number) two columns in, its text four; inline code, emphasis and links show
//! their text alone. Blocks are separated by an empty line, as are the items of a loose
//! list. A definition list's terms are text, their definitions four columns further in
//! (nixpkgs documents function arguments so). What has no layout of its own here (HTML, tables) is shown as it is written.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// The indentation of top-level text.
const BASE: usize = 4;

/// A list being laid out.
struct List {
    /// The next item's number (`None` for bullets).
    next: Option<u64>,
    /// Whether its items' text comes without paragraphs (no empty lines between them).
    tight: bool,
    /// How many items have started.
    items: usize,
}

/// The lines of `md` laid out for a terminal `width` columns wide (indentation included).
pub fn render(md: &str, width: usize) -> Vec<String> {
    let mut r = Renderer {
        out: Vec::new(),
        width,
        indent: BASE,
        words: String::new(),
        marker: None,
        lists: Vec::new(),
        code: None,
        item_opened: false,
        after_marker: false,
    };
    for ev in Parser::new_ext(md, Options::ENABLE_DEFINITION_LIST) {
        r.event(ev);
    }
    r.flush();
    while r.out.last().is_some_and(|l| l.is_empty()) {
        r.out.pop();
    }
    r.out
}

struct Renderer {
    out: Vec<String>,
    width: usize,
    /// Where the current block's text starts.
    indent: usize,
    /// The text of the paragraph being read, lines separated by `\n` (hard breaks).
    words: String,
    /// The marker of a list item whose first line is still to come (`· `, `2. `).
    marker: Option<String>,
    lists: Vec<List>,
    /// The lines of the code block being read.
    code: Option<String>,
    /// Whether a list item has just started (the next event tells whether its list is tight).
    item_opened: bool,
    /// Whether the last line was an item's marker alone (the block after it follows it).
    after_marker: bool,
}

impl Renderer {
    fn event(&mut self, ev: Event<'_>) {
        if std::mem::take(&mut self.item_opened) {
            if let Some(l) = self.lists.last_mut() {
                l.tight = !matches!(ev, Event::Start(Tag::Paragraph));
            }
        }
        if let Some(code) = &mut self.code {
            match ev {
                Event::Text(t) => code.push_str(&t),
                Event::End(TagEnd::CodeBlock) => {
                    let code = self.code.take().unwrap_or_default();
                    self.code_block(&code);
                }
                _ => {}
            }
            return;
        }
        match ev {
            Event::Start(Tag::Paragraph | Tag::Heading { .. }) => self.flush(),
            Event::End(TagEnd::Paragraph | TagEnd::Heading(_)) => self.flush(),
            Event::Start(Tag::CodeBlock(_)) => {
                self.flush();
                self.code = Some(String::new());
            }
            Event::Start(Tag::List(first)) => {
                self.flush();
                self.lists.push(List {
                    next: first,
                    tight: true,
                    items: 0,
                });
            }
            Event::End(TagEnd::List(_)) => {
                self.flush();
                self.lists.pop();
            }
            Event::Start(Tag::Item) => {
                self.flush();
                let number = self.lists.last_mut().and_then(|list| {
                    list.items += 1;
                    let n = list.next.as_mut()?;
                    *n += 1;
                    Some(*n - 1)
                });
                let marker = match number {
                    Some(n) => format!("{n}. "),
                    None => "· ".to_string(),
                };
                self.marker = Some(marker);
                self.item_opened = true;
                self.indent += 4;
            }
            Event::End(TagEnd::Item) => {
                self.flush();
                self.indent -= 4;
            }
            Event::Start(Tag::DefinitionListTitle) | Event::End(TagEnd::DefinitionListTitle) => {
                self.flush()
            }
            Event::Start(Tag::DefinitionListDefinition) => {
                self.flush();
                self.indent += 4;
            }
            Event::End(TagEnd::DefinitionListDefinition) => {
                self.flush();
                self.indent -= 4;
            }
            Event::Start(Tag::BlockQuote(_)) => {
                self.flush();
                self.indent += 2;
            }
            Event::End(TagEnd::BlockQuote(_)) => {
                self.flush();
                self.indent -= 2;
            }
            Event::Text(t) | Event::Code(t) | Event::InlineHtml(t) | Event::Html(t) => {
                self.words.push_str(&t)
            }
            Event::SoftBreak => self.words.push(' '),
            Event::HardBreak => self.words.push('\n'),
            Event::Rule => {
                self.flush();
                self.block_lines(["-".repeat(self.width.saturating_sub(self.indent).min(40))]);
            }
            _ => {}
        }
    }

    /// Start a block: an empty line after what came before, except at the start, after an
    /// item's marker alone, and within a tight list (before its first item only when the
    /// list is not itself in a tight one).
    fn open_block(&mut self) {
        let blank = match self.lists.split_last() {
            _ if self.out.is_empty() || std::mem::take(&mut self.after_marker) => false,
            None => true,
            Some((l, outer)) if self.marker.is_some() && l.items == 1 => {
                !outer.iter().any(|o| o.tight)
            }
            Some((l, _)) => !l.tight,
        };
        if blank {
            self.out.push(String::new());
        }
    }

    /// Lines at the current indentation, the first one after the item marker if any.
    fn block_lines<I: IntoIterator<Item = String>>(&mut self, lines: I) {
        self.open_block();
        for line in lines {
            let text = match self.marker.take() {
                Some(m) => format!("{}{m}{line}", self.pad(self.indent - 2)),
                None if line.is_empty() => String::new(),
                None => format!("{}{line}", self.pad(self.indent)),
            };
            self.out.push(text);
        }
    }

    /// Spaces for an indentation of `n` columns, at most half the width (deeply nested
    /// lists and quotes stop moving right there).
    fn pad(&self, n: usize) -> String {
        " ".repeat(n.min(self.width / 2))
    }

    /// The paragraph read so far, filled to the width.
    fn flush(&mut self) {
        if self.words.trim().is_empty() {
            self.words.clear();
            return;
        }
        let text = std::mem::take(&mut self.words);
        let width = self.width - self.pad(self.indent).len();
        let lines: Vec<String> = text.split('\n').flat_map(|l| fill(l, width)).collect();
        self.block_lines(lines);
    }

    fn code_block(&mut self, code: &str) {
        let lines: Vec<String> = code
            .trim_end_matches('\n')
            .split('\n')
            .map(|l| format!("  | {l}").trim_end().to_string())
            .collect();
        // The marker of an item that starts with code goes on a line of its own.
        if let Some(m) = self.marker.take() {
            self.open_block();
            self.out
                .push(format!("{}{}", self.pad(self.indent - 2), m.trim_end()));
            self.after_marker = true;
        }
        self.block_lines(lines);
    }
}

/// `text` broken into lines of at most `width` characters, at spaces (a longer word gets a
/// line of its own).
pub fn fill(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut len = 0;
    for word in text.split_whitespace() {
        let n = word.chars().count();
        if len > 0 && len + 1 + n > width {
            lines.push(std::mem::take(&mut line));
            len = 0;
        }
        if len > 0 {
            line.push(' ');
            len += 1;
        }
        line.push_str(word);
        len += n;
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(md: &str) -> String {
        render(md, 80).join("\n")
    }

    #[test]
    fn paragraphs_are_filled_and_inline_markup_shows_its_text() {
        let md = "Apply the function *f* to each element in the list `list`,\nlazily. \
                  See [the manual](https://nixos.org/manual) for **more** about it and about \
                  everything else that is in there.\n\nSecond.";
        assert_eq!(
            show(md),
            "    Apply the function f to each element in the list list, lazily. See the\n    \
             manual for more about it and about everything else that is in there.\n\n    Second."
        );
        for line in render(md, 80) {
            assert!(line.chars().count() <= 80, "{line:?}");
        }
    }

    #[test]
    fn hard_breaks_are_kept() {
        assert_eq!(show("one\\\ntwo three"), "    one\n    two three");
    }

    #[test]
    fn code_blocks_keep_their_lines() {
        let md = "For example,\n\n```nix\nmap (x: \"foo\" + x)\n  [ \"bar\" ]\n```\n\nevaluates.";
        assert_eq!(
            show(md),
            "    For example,\n\n      | map (x: \"foo\" + x)\n      |   [ \"bar\" ]\n\n    evaluates."
        );
        assert_eq!(show("    indented code\n"), "      | indented code");
    }

    #[test]
    fn lists_have_markers_and_their_text_further_in() {
        let loose = "Attributes:\n\n- url\\\n  The URL of the repo.\n\n- name\n\n  More about the \
                     name.\n\nAfter.";
        assert_eq!(
            show(loose),
            "    Attributes:\n\n      · url\n        The URL of the repo.\n\n      · name\n\n        \
             More about the name.\n\n    After."
        );
        let tight = "1. one\n2. two\n   - inner\n";
        assert_eq!(show(tight), "      1. one\n      2. two\n          · inner");
        // An item that starts with code: the marker, then the block.
        assert_eq!(
            show("- ```\n  x = 1;\n  ```\n"),
            "      ·\n          | x = 1;"
        );
    }

    #[test]
    fn definitions_are_further_in() {
        assert_eq!(
            show("`sep`\n\n: Separator to add\n\n`f`\n\n: Function"),
            "    sep\n\n        Separator to add\n\n    f\n\n        Function"
        );
    }

    /// Whatever a doc comment holds is laid out without a panic, and in the width where the
    /// words fit.
    #[test]
    fn any_text_is_laid_out() {
        let deep = format!("{}x", "> - ".repeat(40));
        let long = "w".repeat(200);
        for md in [
            "",
            "```\nunclosed",
            "<div>\n*html*\n</div>",
            "| a | b |\n|---|---|\n| 1 | 2 |",
            "1. a\n\n   ```\n   code\n   ```\n2. b",
            "- \n- ",
            ":::{.example}\n# Title\n:::",
            "term\n: \n",
            "***\n---",
            deep.as_str(),
            long.as_str(),
        ] {
            for line in render(md, 80) {
                let words = line.split_whitespace().all(|w| w.chars().count() > 60);
                assert!(
                    line.chars().count() <= 80 || words || line.contains('|'),
                    "{md:?}: {line:?}"
                );
            }
        }
    }

    #[test]
    fn headings_and_quotes() {
        assert_eq!(
            show("# Inputs\n\n> quoted\n\ntext"),
            "    Inputs\n\n      quoted\n\n    text"
        );
    }
}
