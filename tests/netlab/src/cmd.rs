//! Running external commands with errors that keep their output.

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};

/// Renders a command line for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(char::is_whitespace) {
            s.push_str(&format!("{a:?}"));
        } else {
            s.push_str(&a);
        }
    }
    s
}

/// Runs `cmd` to completion (stdin closed) and returns its output, or [`Error::Command`] with
/// stdout and stderr when it exits unsuccessfully.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let line = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            cmd: line.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(Error::Command {
            cmd: line,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Runs `program args...` and returns its stdout as (lossy) UTF-8.
pub fn run_stdout<I, S>(program: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = run(Command::new(program).args(args))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Parses `text` (the output of `cmd`) as JSON into `T`.
pub fn parse_json<T: serde::de::DeserializeOwned>(cmd: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|source| Error::Json {
        cmd: cmd.to_owned(),
        output: text.to_owned(),
        source,
    })
}
