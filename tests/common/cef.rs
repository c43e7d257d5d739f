//! A strict CEF reader for the tests (CEF specification, "Character Encoding"): the
//! header split on unescaped `|` with `\|` and `\\` undone, the extension split into
//! `key=value` pairs with `\=`, `\\`, `\n` and `\r` undone, and anything else refused.
//! It is written apart from the sensor's writer so that the two check each other.

use std::collections::BTreeMap;

/// A CEF record: the seven header fields and the extension, all unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cef {
    /// The seven header fields, `CEF:0` first.
    pub header: Vec<String>,
    /// The extension's keys and unescaped values.
    pub ext: BTreeMap<String, String>,
}

/// Reads a CEF record, refusing anything the specification does not allow.
pub fn parse_cef(text: &str) -> Result<Cef, String> {
    let (header, extension) = split_header(text)?;
    if header[0] != "CEF:0" {
        return Err(format!("version field is {:?}, not CEF:0", header[0]));
    }
    Ok(Cef {
        header,
        ext: parse_extension(extension)?,
    })
}

/// Splits the header on unescaped `|` into seven fields, undoing `\|` and `\\`; returns
/// them and the extension that follows.
fn split_header(text: &str) -> Result<(Vec<String>, &str), String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e @ ('\\' | '|'))) => field.push(e),
                other => return Err(format!("bad header escape at byte {at}: {other:?}")),
            },
            '|' => {
                fields.push(std::mem::take(&mut field));
                if fields.len() == 7 {
                    return Ok((fields, &text[at + 1..]));
                }
            }
            c => field.push(c),
        }
    }
    Err(format!("header ends after {} of 7 fields", fields.len()))
}

/// Splits the extension into `key=value` pairs; a key is `[A-Za-z0-9_]+` before an
/// unescaped `=`, and a value runs to the space before the next key.
fn parse_extension(mut rest: &str) -> Result<BTreeMap<String, String>, String> {
    let mut ext = BTreeMap::new();
    while !rest.is_empty() {
        let len = key_len(rest).ok_or_else(|| format!("no key at {rest:?}"))?;
        let (value, next) = read_value(&rest[len + 1..])?;
        if ext.insert(rest[..len].to_owned(), value).is_some() {
            return Err(format!("key {} repeated", &rest[..len]));
        }
        rest = next;
    }
    Ok(ext)
}

/// The length of the key at the start of `text`, if a `=` follows it.
fn key_len(text: &str) -> Option<usize> {
    let len = text
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    (len > 0 && text.as_bytes().get(len) == Some(&b'=')).then_some(len)
}

/// Reads and unescapes one value; returns it and the text of the next pair.
fn read_value(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => value.push(unescape(chars.next().map(|(_, e)| e))?),
            ' ' if key_len(&text[at + 1..]).is_some() => return Ok((value, &text[at + 1..])),
            '=' => return Err(format!("unescaped `=` after {value:?}")),
            c if c.is_control() => return Err(format!("raw control character after {value:?}")),
            c => value.push(c),
        }
    }
    Ok((value, ""))
}

/// The character an extension escape stands for: `\\`, `\=`, `\n`, `\r` only.
fn unescape(escaped: Option<char>) -> Result<char, String> {
    match escaped {
        Some('\\') => Ok('\\'),
        Some('=') => Ok('='),
        Some('n') => Ok('\n'),
        Some('r') => Ok('\r'),
        other => Err(format!("bad extension escape {other:?}")),
    }
}
