//! Text that came from outside (registry rows, config files, server replies) made safe to show:
//! control characters escaped for terminals, URL userinfo redacted, long values cut. Pure
//! functions; every printer and error message that echoes foreign text goes through here.

use std::borrow::Cow;
use std::fmt::Write;

/// How many characters of a foreign value an error message echoes.
pub const ECHO_CHARS: usize = 80;

/// Whether `c` could move the cursor, retitle or clear a terminal, or reorder what follows it:
/// C0 and C1 controls, DEL, and the bidirectional overrides and isolates.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character written as `\u{…}`, so that printing it cannot drive the
/// reader's terminal (`ESC[2J`, OSC titles, a bare `\r` that hides what came before).
pub fn escape_control(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` cut to at most `max` characters, with what was cut said at the end.
pub fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((end, _)) => Cow::Owned(format!("{}… ({} bytes in all)", &s[..end], s.len())),
    }
}

/// A foreign value as an error message may echo it: escaped and cut to [`ECHO_CHARS`].
pub fn echo(s: &str) -> String {
    escape_control(&truncate(s, ECHO_CHARS)).into_owned()
}

/// Every `scheme://user:password@` in `s` with its userinfo replaced by `***`, whether or not
/// the URL around it parses. Text without userinfo is returned as it is.
pub fn redact_urls(s: &str) -> Cow<'_, str> {
    if !s.contains("://") || !s.contains('@') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // Userinfo ends at the last @ before ? # or whitespace: not before the first /, because
        // a password may hold an unescaped / (a path holding an @ is redacted too: too much
        // hidden is safe, too little is not).
        let authority_end = tail
            .find(|c: char| matches!(c, '?' | '#') || c.is_whitespace())
            .unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(userinfo_end) => {
                out.push_str("***");
                rest = &tail[userinfo_end..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// One URL (parsed or not) with its userinfo replaced by `***`: everything between the scheme's
/// `://` (or the start, when there is no scheme) and the last `@` before the path. Stricter than
/// [`redact_urls`], which must find URLs in free text: here a space or a stray `://` later in
/// the URL cannot end the userinfo early.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let start = match url.find("://") {
        Some(i)
            if url[..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            i + 3
        }
        _ => 0,
    };
    let rest = &url[start..];
    // Not ended by / or \: a password may hold them unescaped (see `redact_urls`).
    let authority_end = rest.find(['?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => Cow::Owned(format!("{}***{}", &url[..start], &rest[at..])),
        None => Cow::Borrowed(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_not_copied() {
        assert!(matches!(escape_control("mcp-search ü"), Cow::Borrowed(_)));
        assert_eq!(
            escape_control("a\u{1b}]0;pwned\u{7}b\u{1b}[2J\r\u{9b}\u{202e}"),
            "a\\u{1b}]0;pwned\\u{7}b\\u{1b}[2J\\u{d}\\u{9b}\\u{202e}"
        );
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("short", 80), "short");
        let long = "é".repeat(100);
        let cut = truncate(&long, 80);
        assert!(cut.starts_with(&"é".repeat(80)), "{cut}");
        assert!(cut.ends_with("… (200 bytes in all)"), "{cut}");
        assert_eq!(
            echo(&format!("{}\u{1b}", "x".repeat(79))),
            format!("{}\\u{{1b}}", "x".repeat(79))
        );
    }

    #[test]
    fn userinfo_is_redacted_wherever_it_appears() {
        assert_eq!(
            redact_urls("http://monitor:PASS@host:8080/health"),
            "http://***@host:8080/health"
        );
        assert_eq!(
            redact_urls("bad URL http://u:p@w@[::1/x and https://a:b@c"),
            "bad URL http://***@[::1/x and https://***@c"
        );
        assert_eq!(
            redact_urls("http://monitor:ab/cd@h/health and http://m:12/x@h"),
            "http://***@h/health and http://***@h"
        );
        assert_eq!(redact_urls("http://host/a?x=y@z"), "http://host/a?x=y@z");
        assert!(matches!(redact_urls("no url here"), Cow::Borrowed(_)));
    }

    #[test]
    fn one_url_loses_all_of_its_userinfo() {
        assert_eq!(
            redact_url("http://monitor:PASS@127.0.0.1:80/h"),
            "http://***@127.0.0.1:80/h"
        );
        assert_eq!(
            redact_url("http://mon itor:P@SS word@[::1/h"),
            "http://***@[::1/h"
        );
        assert_eq!(redact_url("monitor:PASS@host/h"), "***@host/h");
        assert_eq!(
            redact_url("user:PASS@host/x?next=http://y"),
            "***@host/x?next=http://y"
        );
        assert_eq!(redact_url("http://monitor:12/cd@h/x"), "http://***@h/x");
        assert_eq!(redact_url("https://host/a?b@c"), "https://host/a?b@c");
        assert!(matches!(redact_url("http://host:80/h"), Cow::Borrowed(_)));
    }
}
