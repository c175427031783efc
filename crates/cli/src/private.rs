//! Data at rest belongs to its owner alone: password hashes, inline file
//! bytes (SQLite), chunks, keys and the client cache (copies of private
//! files, named by chunk id) are never readable by other local users.
//!
//! `dfs serve` and `dfs up` set the umask to 077 before creating anything,
//! so every file they (and SQLite, and the children of `dfs up`) create is
//! 0600 and every directory 0700. What an older version or a hand left open
//! is tightened at start by [`tighten`], with one warning per directory.

use std::fs::Permissions;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Access bits of group and other.
const OTHERS: u32 = 0o077;

/// Makes every file and directory this process creates from now on private
/// to its owner (umask 077).
#[allow(unsafe_code)]
pub fn restrict_umask() {
    // SAFETY: umask(2) only sets an attribute of this process; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// One directory in which something was open to group or other.
#[derive(Debug, PartialEq, Eq)]
pub struct Tightened {
    pub dir: PathBuf,
    /// Entries (the directory itself and the files and directories directly
    /// in it) whose group and other bits were cleared.
    pub fixed: usize,
    /// Entries open to others that belong to another user and were left alone.
    pub not_ours: usize,
}

impl std::fmt::Display for Tightened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ", self.dir.display())?;
        if self.fixed > 0 {
            write!(
                f,
                "{} entries were readable by other users; now private to their owner (0700 directories, 0600 files)",
                self.fixed
            )?;
        }
        if self.not_ours > 0 {
            let separator = if self.fixed > 0 { "; " } else { "" };
            write!(
                f,
                "{separator}{} entries readable by other users belong to another user: left as they are",
                self.not_ours
            )?;
        }
        Ok(())
    }
}

/// Clears the group and other bits of `dir` and of everything under it that
/// this user may change (symbolic links are not followed). Answers one
/// [`Tightened`] per directory where anything was open, for the caller to
/// warn about; nothing if all was private already or `dir` does not exist.
pub fn tighten(dir: &Path) -> io::Result<Vec<Tightened>> {
    let mut report = Vec::new();
    match std::fs::symlink_metadata(dir) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return Ok(report),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(report),
        Err(error) => return Err(error),
    }
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let mut here = Tightened {
            dir: current.clone(),
            fixed: 0,
            not_ours: 0,
        };
        let mut entries = vec![current.clone()];
        for entry in std::fs::read_dir(&current)? {
            let path = entry?.path();
            entries.push(path);
        }
        for (index, path) in entries.into_iter().enumerate() {
            let metadata = match std::fs::symlink_metadata(&path) {
                Ok(metadata) => metadata,
                // Removed since the listing (a temp file renamed into place).
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            if metadata.is_symlink() {
                continue;
            }
            if index > 0 && metadata.is_dir() {
                pending.push(path.clone());
            }
            let mode = metadata.mode() & 0o7777;
            if mode & OTHERS == 0 {
                continue;
            }
            match std::fs::set_permissions(&path, Permissions::from_mode(mode & !OTHERS)) {
                Ok(()) => here.fixed += 1,
                // Another user's: not ours to change.
                Err(error) if error.kind() == io::ErrorKind::PermissionDenied => here.not_ours += 1,
                Err(error) => return Err(error),
            }
        }
        if here.fixed + here.not_ours > 0 {
            report.push(here);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn open_entries_are_tightened_with_one_report_per_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let shard = dir.join("chunks/ab");
        std::fs::create_dir_all(&shard).unwrap();
        for (path, bits) in [
            (dir.join("meta.db"), 0o644),
            (dir.join("meta.db-wal"), 0o640),
            (dir.join("private"), 0o600),
            (shard.join("ab01"), 0o644),
            (shard.join("ab02"), 0o604),
        ] {
            std::fs::write(&path, b"x").unwrap();
            std::fs::set_permissions(&path, Permissions::from_mode(bits)).unwrap();
        }
        for path in [&dir, &dir.join("chunks"), &shard] {
            std::fs::set_permissions(path, Permissions::from_mode(0o755)).unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();

        let mut report = tighten(&dir).unwrap();
        report.sort_by(|a, b| a.dir.cmp(&b.dir));
        let summary: Vec<(PathBuf, usize)> = report.iter().map(|t| (t.dir.clone(), t.fixed)).collect();
        // data: itself, chunks/, meta.db, meta.db-wal; chunks: ab/; ab: its two chunks.
        assert_eq!(
            summary,
            vec![(dir.clone(), 4), (dir.join("chunks"), 1), (shard.clone(), 2)]
        );
        assert!(report[0].to_string().contains("4 entries were readable by other users"));
        for path in [&dir, &dir.join("chunks"), &shard] {
            assert_eq!(mode(path), 0o700, "{}", path.display());
        }
        for path in [
            dir.join("meta.db"),
            dir.join("meta.db-wal"),
            dir.join("private"),
            shard.join("ab01"),
            shard.join("ab02"),
        ] {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
        assert_eq!(
            mode(Path::new("/etc/passwd")) & 0o004,
            0o004,
            "a link's target is not touched"
        );
        assert_eq!(tighten(&dir).unwrap(), vec![], "nothing left to do");
        assert_eq!(tighten(&root.path().join("absent")).unwrap(), vec![]);
    }
}
