//! What can go wrong in the comparison's tools, as one type, and the exit code each case
//! gets: the binary maps errors to codes here and nowhere else.

use std::io;
use std::path::PathBuf;

/// A comparison step that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line asks for something that cannot be done (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A file or directory that cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file that cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file that is not what it should be.
    #[error("{} is not {what}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it should have been ("a loadgen report").
        what: &'static str,
        /// Why not.
        source: serde_json::Error,
    },
    /// SIGINT or SIGTERM came; the comparison stopped between runs (exit 130, as a shell
    /// gives).
    #[error("interrupted")]
    Interrupted,
    /// A step that failed, said in a sentence.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The process's exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Interrupted => 130,
            _ => 1,
        }
    }
}

impl From<String> for Error {
    fn from(sentence: String) -> Self {
        Error::Failed(sentence)
    }
}

impl From<&str> for Error {
    fn from(sentence: &str) -> Self {
        Error::Failed(sentence.to_string())
    }
}

/// The comparison's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
