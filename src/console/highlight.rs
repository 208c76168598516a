//! TOML syntax highlighting for the mapping page: each line split into classed spans
//! (comments, table headers, keys, strings, literals). Escaping is maud's; this only decides
//! where spans start and end.

use maud::{html, Markup};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Comment,
    Section,
    Key,
    Str,
    Literal,
}

impl Kind {
    fn class(self) -> Option<&'static str> {
        match self {
            Kind::Plain => None,
            Kind::Comment => Some("t-comment"),
            Kind::Section => Some("t-section"),
            Kind::Key => Some("t-key"),
            Kind::Str => Some("t-string"),
            Kind::Literal => Some("t-literal"),
        }
    }
}

/// A multi-line string still open at the end of a line: its closing delimiter.
pub(super) type Open = Option<&'static str>;

/// Splits one line into (kind, text) pieces; `open` carries a multi-line string across lines.
fn pieces(line: &str, open: &mut Open) -> Vec<(Kind, String)> {
    let mut out: Vec<(Kind, String)> = Vec::new();
    let mut rest = line;
    if let Some(close) = *open {
        match rest.find(close) {
            Some(at) => {
                out.push((Kind::Str, rest[..at + close.len()].to_owned()));
                rest = &rest[at + close.len()..];
                *open = None;
            }
            None => return vec![(Kind::Str, rest.to_owned())],
        }
    }
    let trimmed = rest.trim_start();
    if out.is_empty() && trimmed.starts_with('[') {
        let indent = &rest[..rest.len() - trimmed.len()];
        let (header, tail) = match trimmed.find('#') {
            Some(at) => trimmed.split_at(at),
            None => (trimmed, ""),
        };
        out.push((Kind::Plain, indent.to_owned()));
        out.push((Kind::Section, header.to_owned()));
        if !tail.is_empty() {
            out.push((Kind::Comment, tail.to_owned()));
        }
        return out;
    }
    // A key runs up to the first `=` outside quotes, at the start of a line.
    let mut in_key = out.is_empty() && !trimmed.is_empty() && !trimmed.starts_with('#');
    let mut plain = String::new();
    let flush = |plain: &mut String, out: &mut Vec<(Kind, String)>, kind: Kind| {
        if !plain.is_empty() {
            out.push((kind, std::mem::take(plain)));
        }
    };
    let mut chars = rest.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let kind = if in_key { Kind::Key } else { Kind::Plain };
        match c {
            '#' => {
                flush(&mut plain, &mut out, kind);
                out.push((Kind::Comment, rest[at..].to_owned()));
                return out;
            }
            '"' | '\'' => {
                flush(&mut plain, &mut out, kind);
                let triple: &'static str = if c == '"' { "\"\"\"" } else { "'''" };
                if rest[at..].starts_with(triple) {
                    let after = at + 3;
                    match rest[after..].find(triple) {
                        Some(end) => {
                            let stop = after + end + 3;
                            out.push((Kind::Str, rest[at..stop].to_owned()));
                            while chars.peek().is_some_and(|(i, _)| *i < stop) {
                                chars.next();
                            }
                        }
                        None => {
                            out.push((Kind::Str, rest[at..].to_owned()));
                            *open = Some(triple);
                            return out;
                        }
                    }
                    continue;
                }
                let mut end = rest.len();
                let mut escaped = false;
                for (i, d) in rest[at + 1..].char_indices() {
                    if c == '"' && d == '\\' && !escaped {
                        escaped = true;
                        continue;
                    }
                    if d == c && !escaped {
                        end = at + 1 + i + 1;
                        break;
                    }
                    escaped = false;
                }
                out.push((
                    if in_key { Kind::Key } else { Kind::Str },
                    rest[at..end].to_owned(),
                ));
                while chars.peek().is_some_and(|(i, _)| *i < end) {
                    chars.next();
                }
            }
            '=' if in_key => {
                flush(&mut plain, &mut out, Kind::Key);
                in_key = false;
                plain.push(c);
            }
            c if !in_key
                && (c.is_ascii_digit() || c == '-')
                && plain.ends_with([' ', '=', '[', ',', '{']) =>
            {
                flush(&mut plain, &mut out, Kind::Plain);
                let end = rest[at..]
                    .find([',', ' ', ']', '}'])
                    .map_or(rest.len(), |i| at + i);
                out.push((Kind::Literal, rest[at..end].to_owned()));
                while chars.peek().is_some_and(|(i, _)| *i < end) {
                    chars.next();
                }
            }
            _ if !in_key
                && (rest[at..].starts_with("true") || rest[at..].starts_with("false"))
                && plain.ends_with([' ', '=', '[', ',', '{']) =>
            {
                flush(&mut plain, &mut out, Kind::Plain);
                let word = if rest[at..].starts_with("true") { 4 } else { 5 };
                out.push((Kind::Literal, rest[at..at + word].to_owned()));
                while chars.peek().is_some_and(|(i, _)| *i < at + word) {
                    chars.next();
                }
            }
            c => plain.push(c),
        }
    }
    let kind = if in_key { Kind::Key } else { Kind::Plain };
    flush(&mut plain, &mut out, kind);
    out
}

/// One line as highlighted markup.
pub(super) fn line(text: &str, open: &mut Open) -> Markup {
    html! {
        @for (kind, piece) in pieces(text, open) {
            @match kind.class() {
                Some(class) => span class=(class) { (piece) },
                None => (piece),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(line: &str) -> Vec<(Kind, String)> {
        let mut open = None;
        pieces(line, &mut open)
            .into_iter()
            .filter(|(_, text)| !text.is_empty())
            .collect()
    }

    #[test]
    fn comments_headers_keys_strings_and_literals_get_their_own_spans() {
        assert_eq!(
            kinds("# the role, by number"),
            [(Kind::Comment, "# the role, by number".to_owned())]
        );
        assert_eq!(
            kinds("[fields] # what is sent"),
            [
                (Kind::Section, "[fields] ".to_owned()),
                (Kind::Comment, "# what is sent".to_owned())
            ]
        );
        assert_eq!(
            kinds(r#"email = 'emails[primary eq true].value' # a # inside quotes is text"#),
            [
                (Kind::Key, "email ".to_owned()),
                (Kind::Plain, "= ".to_owned()),
                (Kind::Str, "'emails[primary eq true].value'".to_owned()),
                (Kind::Plain, " ".to_owned()),
                (Kind::Comment, "# a # inside quotes is text".to_owned())
            ]
        );
        assert_eq!(
            kinds("roles = [1, 2]"),
            [
                (Kind::Key, "roles ".to_owned()),
                (Kind::Plain, "= [".to_owned()),
                (Kind::Literal, "1".to_owned()),
                (Kind::Plain, ", ".to_owned()),
                (Kind::Literal, "2".to_owned()),
                (Kind::Plain, "]".to_owned())
            ]
        );
        assert_eq!(
            kinds(r#"note = "say \"hi\" # not a comment""#)[2],
            (Kind::Str, r#""say \"hi\" # not a comment""#.to_owned())
        );
    }

    #[test]
    fn a_multi_line_string_stays_a_string_until_it_closes() {
        let mut open = None;
        pieces(r#"text = """first"#, &mut open);
        assert_eq!(open, Some("\"\"\""));
        assert_eq!(
            pieces("# still text", &mut open),
            [(Kind::Str, "# still text".to_owned())]
        );
        let last = pieces(r#"end""" # done"#, &mut open);
        assert_eq!(open, None);
        assert_eq!(last[0], (Kind::Str, r#"end""""#.to_owned()));
        assert_eq!(last.last().unwrap().0, Kind::Comment);
    }

    #[test]
    fn markup_is_escaped() {
        let mut open = None;
        let html = line("x = '<script>'", &mut open).into_string();
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }
}
