//! Splitting a command line into words the way a POSIX shell would for simple commands.
//!
//! containerlab splits `cmd:` and `exec:` strings into words (quotes group, backslash escapes)
//! and runs them without a shell; we do the same so a line behaves alike in both worlds. No
//! variables, globs or operators: `sh -c '...'` is the way to get those, in both.

use crate::error::TopoError;

/// Splits `line` into words: whitespace separates; `'...'` is literal; `"..."` groups with
/// `\"`, `\\`, `\$` and `` \` `` escapes; a backslash outside quotes escapes the next character.
pub fn split(line: &str) -> Result<Vec<String>, TopoError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    // Whether `cur` is a word even if empty (`''` is an empty argument).
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(unclosed(line, '\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => cur.push(e),
                            Some(e) => {
                                cur.push('\\');
                                cur.push(e);
                            }
                            None => return Err(unclosed(line, '"')),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(unclosed(line, '"')),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(e) => cur.push(e),
                    None => {
                        return Err(TopoError::Command {
                            line: line.to_owned(),
                            reason: "ends with a lone backslash".into(),
                        });
                    }
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn unclosed(line: &str, q: char) -> TopoError {
    TopoError::Command {
        line: line.to_owned(),
        reason: format!("unclosed {q} quote"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::split;

    #[test]
    fn words_and_quotes() {
        assert_eq!(
            split("ip addr  add 10.0.0.1/32 dev lo").unwrap(),
            ["ip", "addr", "add", "10.0.0.1/32", "dev", "lo"]
        );
        assert_eq!(
            split(r#"vtysh -c 'show bgp summary' -c "show \"x\"" a\ b ''"#).unwrap(),
            [
                "vtysh",
                "-c",
                "show bgp summary",
                "-c",
                "show \"x\"",
                "a b",
                ""
            ]
        );
        assert_eq!(split("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split(r#""a\nb""#).unwrap(), [r"a\nb"]);
    }

    #[test]
    fn malformed() {
        for bad in ["echo 'x", "echo \"x", "echo x\\", "echo \"x\\"] {
            let e = split(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
            assert!(e.contains("unclosed") || e.contains("backslash"), "{e}");
        }
    }
}
