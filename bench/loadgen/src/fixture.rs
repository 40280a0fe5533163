//! The inventory `load` made, written to a JSON file that `run` reads: who the customers
//! are (with their tokens), which Pis each owns, and the shelves.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a loadgen fixture")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} holds no {what}")]
    Empty { path: PathBuf, what: &'static str },
}

/// One customer and what they own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Customer {
    pub name: String,
    pub token: String,
    /// Ids of their Pis.
    pub pis: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fixture {
    pub customers: Vec<Customer>,
    /// Shelf names.
    pub shelves: Vec<String>,
}

impl Fixture {
    pub fn save(&self, path: &Path) -> Result<(), FixtureError> {
        let text = serde_json::to_vec(self).expect("a fixture always serialises");
        std::fs::write(path, text)
            .map_err(|source| FixtureError::Write { path: path.to_path_buf(), source })
    }

    /// Reads a fixture and checks it has customers with Pis, and shelves.
    pub fn load(path: &Path) -> Result<Fixture, FixtureError> {
        let text = std::fs::read(path)
            .map_err(|source| FixtureError::Read { path: path.to_path_buf(), source })?;
        let f: Fixture = serde_json::from_slice(&text)
            .map_err(|source| FixtureError::Parse { path: path.to_path_buf(), source })?;
        let empty = |what| FixtureError::Empty { path: path.to_path_buf(), what };
        if !f.customers.iter().any(|c| !c.pis.is_empty()) {
            return Err(empty("customer with a Pi"));
        }
        if f.shelves.is_empty() {
            return Err(empty("shelf"));
        }
        Ok(f)
    }
}
