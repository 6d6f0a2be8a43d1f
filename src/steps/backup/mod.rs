//! The backup backend: `backup.verify`, `backup.fresh` and `backup.prune`, on the instance's backup store
//! whatever the kind of backup.

pub mod fresh;
pub mod prune;
pub mod verify;



