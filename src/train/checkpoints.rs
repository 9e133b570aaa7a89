//! Checkpoint folders `checkpoints/ckpt-<step>/` that are never half-written: filled in a temp
//! folder, every file and folder fsynced, a same-step predecessor renamed aside before the swap.

use crate::fsutil::sync_dir;
use anyhow::{Context, Result};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

const PREFIX: &str = "ckpt-";

/// The checkpoint folders of one run directory.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    root: PathBuf,
}

impl Checkpoints {
    /// `run_dir/checkpoints`; leftovers of an interrupted save are cleaned up (a complete
    /// checkpoint renamed aside comes back if its replacement never arrived).
    pub fn open(run_dir: &Path) -> Result<Self> {
        let s = Self {
            root: run_dir.join("checkpoints"),
        };
        fs::create_dir_all(&s.root)
            .with_context(|| format!("cannot create {}", s.root.display()))?;
        s.recover()?;
        Ok(s)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder name of step `step`.
    pub fn name(step: u64) -> String {
        format!("{PREFIX}{step:09}")
    }

    /// Complete checkpoint folders, oldest first.
    pub fn list(&self) -> Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = fs::read_dir(&self.root)
            .with_context(|| format!("cannot list {}", self.root.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| step_of(p).is_some() && p.is_dir())
            .collect();
        v.sort_by_key(|p| step_of(p));
        Ok(v)
    }

    /// The newest complete checkpoint.
    pub fn latest(&self) -> Result<Option<PathBuf>> {
        Ok(self.list()?.pop())
    }

    /// Writes checkpoint `step`: `fill` writes its files into a temp folder, which is fsynced and
    /// renamed into place; then all but the newest `keep` are deleted. On any error the temp
    /// folder is removed and every earlier checkpoint is left as it was.
    pub fn save(
        &self,
        step: u64,
        keep: usize,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        let name = Self::name(step);
        let tmp = self.root.join(format!(".{name}.tmp"));
        let dest = self.root.join(&name);
        let result = (|| -> Result<()> {
            remove_if_exists(&tmp)?;
            fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
            fill(&tmp)?;
            sync_tree(&tmp)?;
            self.swap_in(&tmp, &dest)
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e).with_context(|| {
                format!(
                    "cannot write checkpoint {}; earlier checkpoints are kept",
                    dest.display()
                )
            });
        }
        // the new checkpoint is in place: failing to delete old ones must not stop training
        if let Err(e) = self.prune(keep) {
            tracing::warn!("{e:#}");
        }
        Ok(dest)
    }

    /// Moves a complete temp folder to `dest`; an existing `dest` is renamed aside first and
    /// deleted only after the new one is in place, so a complete checkpoint is always on disk.
    fn swap_in(&self, tmp: &Path, dest: &Path) -> Result<()> {
        let aside = self.root.join(format!(
            ".{}.old",
            dest.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        remove_if_exists(&aside)?;
        let had_old = dest.exists();
        if had_old {
            fs::rename(dest, &aside)
                .with_context(|| format!("cannot move {} aside", dest.display()))?;
        }
        fs::rename(tmp, dest)
            .with_context(|| format!("cannot move the checkpoint into {}", dest.display()))?;
        sync_dir(&self.root)?;
        if had_old {
            remove_if_exists(&aside)?;
        }
        Ok(())
    }

    fn prune(&self, keep: usize) -> Result<()> {
        let all = self.list()?;
        for old in all.iter().take(all.len().saturating_sub(keep.max(1))) {
            fs::remove_dir_all(old)
                .with_context(|| format!("cannot remove old checkpoint {}", old.display()))?;
        }
        Ok(())
    }

    /// Removes temp folders of interrupted saves; restores a checkpoint renamed aside whose
    /// replacement never got in, and deletes it where the replacement did.
    fn recover(&self) -> Result<()> {
        let entries = fs::read_dir(&self.root)
            .with_context(|| format!("cannot list {}", self.root.display()))?;
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with('.') && name.ends_with(".tmp") {
                remove_if_exists(&path)?;
            } else if let Some(base) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".old")) {
                let dest = self.root.join(base);
                if dest.exists() {
                    remove_if_exists(&path)?;
                } else {
                    fs::rename(&path, &dest)
                        .with_context(|| format!("cannot restore {}", dest.display()))?;
                }
            }
        }
        Ok(())
    }
}

/// The step of a checkpoint folder `ckpt-<step>`.
pub fn step_of(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix(PREFIX)?
        .parse()
        .ok()
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// fsyncs every file and folder below `dir`, and `dir` itself.
fn sync_tree(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let p = entry.path();
        if p.is_dir() {
            sync_tree(&p)?;
        } else if p.is_file() {
            File::open(&p)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot sync {}", p.display()))?;
        }
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> Result<()> {
        fs::write(dir.join("state.json"), text)?;
        Ok(())
    }

    fn steps(c: &Checkpoints) -> Vec<u64> {
        c.list()
            .unwrap()
            .iter()
            .filter_map(|p| step_of(p))
            .collect()
    }

    #[test]
    fn saves_replace_prune_and_recover_without_losing_a_complete_checkpoint() {
        let run = tempfile::tempdir().unwrap();
        let c = Checkpoints::open(run.path()).unwrap();
        for s in [2, 4, 6] {
            c.save(s, 2, |d| write(d, &s.to_string())).unwrap();
        }
        let names = steps(&c);
        assert_eq!(names, vec![4, 6]);
        // the same step again replaces the folder
        c.save(6, 2, |d| write(d, "again")).unwrap();
        let latest = c.latest().unwrap().unwrap();
        assert_eq!(
            fs::read_to_string(latest.join("state.json")).unwrap(),
            "again"
        );
        // a failing fill leaves the earlier checkpoints as they were and no temp folder
        let err = c.save(8, 2, |_| anyhow::bail!("disk full")).unwrap_err();
        assert!(format!("{err:#}").contains("disk full"));
        assert_eq!(c.list().unwrap().len(), 2);
        assert!(!c.root().join(".ckpt-000000008.tmp").exists());
        // a crash between "rename aside" and "rename in": the aside copy comes back
        fs::rename(latest, c.root().join(".ckpt-000000006.old")).unwrap();
        fs::create_dir(c.root().join(".ckpt-000000010.tmp")).unwrap();
        let c = Checkpoints::open(run.path()).unwrap();
        let names = steps(&c);
        assert_eq!(names, vec![4, 6]);
        assert_eq!(fs::read_dir(c.root()).unwrap().count(), 2);
    }
}
