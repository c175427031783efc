use super::SqliteStore;
use crate::NamespaceStore;

pub(super) const SCHEMA: &str = "SELECT 1;";

impl NamespaceStore for SqliteStore {}
