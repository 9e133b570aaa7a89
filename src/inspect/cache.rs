//! Where an inspection lives and when it is done: the cache key (checkpoint identities, images,
//! limit, pool, size), the staging folder renamed into place, and the "finished" test (`end`).

use super::InspectSpec;
use crate::runlog::{self, Event, RunKind};
use crate::train::lock::RunLock;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Bumped when the directory layout changes, so old caches are not mistaken for new ones.
const LAYOUT: &str = "mimr-inspect-1";
/// The lock file `RunLock` keeps in the staging folder.
const LOCK_FILE: &str = "run.lock";
/// Staging folders younger than this are left alone even when unlocked.
const STAGING_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// `$XDG_CACHE_HOME/mimr/inspect`, else `$HOME/.cache/mimr/inspect`, else the temp folder's.
pub fn cache_root() -> PathBuf {
    let env_dir = |k: &str| {
        std::env::var_os(k)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let base = env_dir("XDG_CACHE_HOME")
        .or_else(|| env_dir("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("mimr").join("inspect")
}

/// `cache_root()/<key>`: the folder an inspection of `spec` is cached in (without `out`).
pub fn cache_dir(spec: &InspectSpec) -> PathBuf {
    cache_root().join(key(spec))
}

/// A hex hash of what decides the features: each checkpoint's canonical path, size and mtime,
/// the images folder's canonical path and the mtimes of it and its subfolders (files added or
/// removed), `limit`, `pool`, `image_size` and `heads`.
pub fn key(spec: &InspectSpec) -> String {
    let mut text = format!(
        "{LAYOUT}\nlimit={}\npool={:?}\nsize={:?}\nheads={:?}\n",
        spec.limit, spec.pool, spec.image_size, spec.heads
    );
    for c in &spec.checkpoints {
        text.push_str(&format!("ckpt={}\n", identity(c)));
    }
    text.push_str(&format!("images={}\n", identity(&spec.images)));
    for sub in subfolders(&spec.images) {
        text.push_str(&format!("sub={}\n", identity(&sub)));
    }
    format!("{:016x}", fnv1a(text.as_bytes()))
}

/// Canonical path, size and modification time (ns) of `p`; the path as given when it is missing.
fn identity(p: &Path) -> String {
    let canon = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let meta = std::fs::metadata(&canon).ok();
    let size = meta.as_ref().map_or(0, |m| m.len());
    let mtime = meta
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{} {size} {mtime}", canon.display())
}

/// The direct subfolders of `dir`, sorted (none when it cannot be read).
fn subfolders(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// FNV-1a, 64 bit: stable across builds and platforms (std's hasher is not promised to be).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What a directory holds, judged by its run log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Nothing there (or an empty folder).
    Absent,
    /// A complete inspection of these inputs (`key` matches, an `end` event).
    Finished,
    /// An inspection of other inputs, or an incomplete one: safe to replace.
    Stale,
    /// Something that is not an inspection: never touched.
    Foreign,
}

/// Reads `dir`'s log to decide whether it is a finished inspection with cache key `key`.
pub fn state(dir: &Path, key: &str) -> State {
    let empty = std::fs::read_dir(dir).map(|mut d| d.next().is_none());
    if !dir.exists() || empty.unwrap_or(false) {
        return State::Absent;
    }
    let Ok(replay) = runlog::read_all(&dir.join(runlog::FILE)) else {
        return State::Foreign;
    };
    let Some(Event::Header(h)) = replay.events.first() else {
        return State::Foreign;
    };
    if h.kind != RunKind::Inspect {
        return State::Foreign;
    }
    let same = h.config.get("key").and_then(|k| k.as_str()) == Some(key);
    let ended = replay.events.iter().any(|e| matches!(e, Event::End { .. }));
    if same && ended {
        State::Finished
    } else {
        State::Stale
    }
}

/// A hidden folder beside the target that the inspection is written into, locked while in use;
/// removed on drop unless [`Staging::publish`] renamed it into place.
pub struct Staging {
    path: PathBuf,
    lock: Option<RunLock>,
    published: bool,
}

impl Staging {
    /// Creates `.<name>.tmp-<pid>-<n>` beside `target`, first removing dead ones (unlocked).
    pub fn new(target: &Path) -> Result<Self> {
        let (parent, name) = split(target)?;
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create folder {}", parent.display()))?;
        remove_dead_staging(&parent, &name);
        let nanos = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = parent.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path)
            .with_context(|| format!("cannot create folder {}", path.display()))?;
        let lock = RunLock::acquire(&path)?;
        Ok(Self {
            path,
            lock: Some(lock),
            published: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the folder to `target` (replacing a stale inspection there). When another
    /// process finished the same inspection first, its folder is kept and this one dropped.
    pub fn publish(mut self, target: &Path, key: &str) -> Result<()> {
        crate::fsutil::sync_dir(&self.path)?;
        match state(target, key) {
            State::Finished => return Ok(()),
            State::Foreign => bail!(
                "{} exists and is not an inspection directory: choose another output folder or remove it",
                target.display()
            ),
            State::Stale => remove(target)?,
            State::Absent if target.exists() => remove(target)?,
            State::Absent => {}
        }
        // the lock file goes first: a folder with open files cannot be renamed everywhere
        self.lock = None;
        let _ = std::fs::remove_file(self.path.join(LOCK_FILE));
        std::fs::rename(&self.path, target).with_context(|| {
            format!(
                "cannot move {} to {}",
                self.path.display(),
                target.display()
            )
        })?;
        self.published = true;
        let (parent, _) = split(target)?;
        crate::fsutil::sync_dir(&parent)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        self.lock = None;
        if !self.published {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// `target`'s parent folder and file name, or an error naming it.
fn split(target: &Path) -> Result<(PathBuf, String)> {
    let name = target
        .file_name()
        .with_context(|| format!("output folder {} has no name", target.display()))?;
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((parent.to_path_buf(), name.to_string_lossy().into_owned()))
}

fn remove(dir: &Path) -> Result<()> {
    std::fs::remove_dir_all(dir)
        .with_context(|| format!("cannot remove the stale inspection {}", dir.display()))
}

/// Removes staging folders of `name` whose writer is gone (its lock can be taken).
fn remove_dead_staging(parent: &Path, name: &str) {
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for p in entries.flatten().map(|e| e.path()) {
        let ours = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&prefix));
        // a folder created a moment ago may not hold its lock yet
        let age = std::fs::metadata(&p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        if !ours || !p.is_dir() || age.is_none_or(|a| a < STAGING_GRACE) {
            continue;
        }
        if let Ok(lock) = RunLock::acquire(&p) {
            let _ = std::fs::remove_dir_all(&p);
            drop(lock);
        }
    }
}
