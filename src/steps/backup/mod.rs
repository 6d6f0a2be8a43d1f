//! The backup backend: `backup.verify` and `backup.prune`, on the instance's backup store
//! whatever the kind of backup.

pub mod prune;
pub mod verify;



