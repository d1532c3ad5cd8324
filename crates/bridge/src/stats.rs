//! A running bridge's counters, for `framebus inspect`: every
//! [`STATS_INTERVAL`] the bridge rewrites a small JSON file,
//! `<runtime root>/.bridge/<bus>.<role>.<pid>.json` (the runtime root is the
//! one that holds the trigger directories: `/dev/shm/framebus-<uid>`, or
//! `$FRAMEBUS_RUNTIME_DIR/framebus`; on Windows `%LOCALAPPDATA%\framebus`:
//! `framebus_platform::state_root`), and removes it when it stops. Beside
//! it, `.<file>.lock` holds the bridge's liveness token
//! (`framebus_platform::hold_file_token`; on Windows a named event of that
//! path, no file): a reader tells a killed bridge's leftover file by the
//! token's absence, never by its pid. The bus's shared
//! memory layout is unchanged, and the producer's trigger directory holds
//! nothing but FIFOs. The file is replaced by a rename, so a reader never
//! sees half of one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shm_layout::BusName;

/// How often a bridge rewrites its stats file.
pub const STATS_INTERVAL: Duration = Duration::from_millis(500);

/// Name of the directory below the runtime root that holds the stats
/// files. It starts with a dot, which no bus name does, so it is never
/// taken for a bus's trigger directory.
pub const STATS_DIR_NAME: &str = ".bridge";

/// Which end of a bridge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `framebus bridge out`: reads a local bus, publishes to the network.
    #[default]
    Out,
    /// `framebus bridge in`: subscribes, produces a local bus.
    In,
}

impl Role {
    /// `out` or `in`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Out => "out",
            Self::In => "in",
        }
    }
}

/// What a bridge reports. Counters only grow over the bridge's life; the
/// rates cover the last [`STATS_INTERVAL`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BridgeStats {
    /// Which end.
    pub role: Role,
    /// The local bus (read by `out`, produced by `in`).
    pub bus: String,
    /// The zenoh key expression.
    pub key: String,
    /// The bridge's process id.
    pub pid: u32,
    /// Endpoints as configured, e.g. `listen tcp/0.0.0.0:7447`.
    pub endpoints: Vec<String>,
    /// Zenoh peers (and routers) this bridge has a session with now.
    pub peers: u32,
    /// `out`: the compression it sends with.
    pub compression: String,
    /// `out`: frames published to the network.
    pub frames_sent: u64,
    /// `out`: payload bytes published.
    pub bytes_sent: u64,
    /// `out`: frames of the local bus it did not take (it was busy with an
    /// older one, or `--max-fps`): gaps in the sequence numbers it pinned.
    pub frames_skipped: u64,
    /// `out`: frames it did not encode because no subscriber matched.
    pub frames_unmatched: u64,
    /// `out`: publications zenoh refused.
    pub send_errors: u64,
    /// `in`: samples received.
    pub frames_received: u64,
    /// `in`: payload bytes received.
    pub bytes_received: u64,
    /// `in`: frames published on the local bus.
    pub frames_published: u64,
    /// `in`: frames that never arrived: gaps in the sequence numbers
    /// received (dropped by `out`, by zenoh's congestion control on a slow
    /// link, or not taken from the camera bus).
    pub frames_lost: u64,
    /// `in`: frames received but replaced by a newer one before they could
    /// be published (this side was busy).
    pub dropped_overrun: u64,
    /// `in`: payloads rejected (foreign, truncated, corrupt, wrong size).
    pub dropped_invalid: u64,
    /// `in`: frames not newer than the last one published.
    pub dropped_stale: u64,
    /// `in`: local buses created (the first, and one more per change of
    /// geometry or of camera-side producer).
    pub buses_created: u64,
    /// The newest frame's sequence number handled.
    pub last_seq: u64,
    /// Frames per second sent (`out`) or published (`in`) lately (in the
    /// counters a bridge returns when it stops: over its whole run).
    pub fps: f64,
    /// Payload bytes per second sent or received, over the same time.
    pub bytes_per_s: f64,
    /// The last problem, if any (an invalid payload, a send error...).
    pub last_error: Option<String>,
    /// When the bridge started, Unix milliseconds.
    pub started_unix_ms: u64,
    /// When this file was written, Unix milliseconds.
    pub updated_unix_ms: u64,
}

impl BridgeStats {
    /// Frames this end has moved: sent (`out`) or published (`in`).
    pub fn frames(&self) -> u64 {
        match self.role {
            Role::Out => self.frames_sent,
            Role::In => self.frames_published,
        }
    }

    /// Frames this end has dropped or never got, all causes together.
    pub fn dropped(&self) -> u64 {
        match self.role {
            Role::Out => self.frames_skipped + self.send_errors,
            Role::In => {
                self.frames_lost + self.dropped_overrun + self.dropped_invalid + self.dropped_stale
            }
        }
    }
}

/// A stats file found for a bus.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsReport {
    /// What the bridge wrote.
    pub stats: BridgeStats,
    /// Whether the bridge process still runs (a killed bridge leaves its
    /// file behind).
    pub alive: bool,
    /// Milliseconds since the file was written.
    pub age_ms: u64,
    /// The file.
    pub path: PathBuf,
}

/// The directory of the stats files for this user and environment.
pub fn stats_dir() -> PathBuf {
    framebus_platform::state_root().join(STATS_DIR_NAME)
}

/// The liveness lock beside a stats file.
fn lock_path(stats: &Path) -> PathBuf {
    let name = stats
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("stats");
    stats.with_file_name(format!(".{name}.lock"))
}

/// Whether the bridge that writes `stats` still runs: it holds the token of
/// the lock beside it.
fn writer_alive(stats: &Path) -> bool {
    framebus_platform::file_token_held(&lock_path(stats))
}

/// Every bridge stats file of `bus` in [`stats_dir`], newest first.
/// Unreadable or foreign files are skipped.
pub fn read_stats(bus: &BusName) -> Vec<StatsReport> {
    read_stats_in(&stats_dir(), bus)
}

/// Like [`read_stats`], in `dir`.
pub fn read_stats_in(dir: &Path, bus: &BusName) -> Vec<StatsReport> {
    let prefix = format!("{}.", bus.as_str());
    let now = unix_ms();
    let mut found: Vec<StatsReport> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let name = name.to_str()?;
            if !name.starts_with(&prefix) || !name.ends_with(".json") {
                return None;
            }
            let path = entry.path();
            // Small files only: a stats file is well under 4 KiB.
            let text = std::fs::read(&path).ok().filter(|t| t.len() < 64 * 1024)?;
            let stats: BridgeStats = serde_json::from_slice(&text).ok()?;
            // A dotted bus name may share the prefix of another's files.
            (stats.bus == bus.as_str()).then(|| StatsReport {
                alive: writer_alive(&path),
                age_ms: now.saturating_sub(stats.updated_unix_ms),
                stats,
                path,
            })
        })
        .collect();
    found.sort_by_key(|r| r.age_ms);
    found
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Writes one bridge's stats file and removes it when dropped.
#[derive(Debug)]
pub struct StatsFile {
    path: PathBuf,
    tmp: PathBuf,
    warned: bool,
    /// This bridge's liveness token.
    lock: Option<framebus_platform::FileToken>,
}

impl StatsFile {
    /// The file of this process's `role` end for `bus`, in [`stats_dir`].
    pub fn new(bus: &BusName, role: Role) -> Self {
        Self::new_in(&stats_dir(), bus, role)
    }

    /// Like [`StatsFile::new`], in `dir`. Files of this bus that killed
    /// bridges left behind are removed.
    pub fn new_in(dir: &Path, bus: &BusName, role: Role) -> Self {
        for stale in read_stats_in(dir, bus).iter().filter(|r| !r.alive) {
            tracing::debug!(path = %stale.path.display(), pid = stale.stats.pid, "removing the stats file of a bridge that is gone");
            let _ = std::fs::remove_file(&stale.path);
            let _ = std::fs::remove_file(lock_path(&stale.path));
        }
        let pid = std::process::id();
        let name = format!("{}.{}.{pid}.json", bus.as_str(), role.as_str());
        Self {
            path: dir.join(&name),
            tmp: dir.join(format!(".{name}.tmp")),
            warned: false,
            lock: None,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file's content with `stats`. A failure is logged once
    /// and otherwise ignored: counters are a convenience, never a reason to
    /// stop moving frames.
    pub fn write(&mut self, stats: &BridgeStats) {
        if let Err(e) = self.try_write(stats) {
            if !self.warned {
                self.warned = true;
                tracing::warn!(path = %self.path.display(), "cannot write the bridge stats file ({e}); `framebus inspect` will not show this bridge");
            }
        }
    }

    fn try_write(&mut self, stats: &BridgeStats) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            create_private_dir(dir)?;
        }
        if self.lock.is_none() {
            let token =
                framebus_platform::hold_file_token(&lock_path(&self.path))?.ok_or_else(|| {
                    std::io::Error::other("another process holds this stats file's token")
                })?;
            self.lock = Some(token);
        }
        let text = serde_json::to_vec_pretty(stats).map_err(std::io::Error::other)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode_private()
            .open(&self.tmp)?;
        f.write_all(&text)?;
        drop(f);
        std::fs::rename(&self.tmp, &self.path)
    }

    /// Removes the file (also done on drop).
    pub fn remove(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
        let _ = std::fs::remove_file(&self.path);
        if self.lock.take().is_some() {
            let _ = std::fs::remove_file(lock_path(&self.path));
        }
        // The directory too once no bridge uses it (fails harmlessly if
        // another bridge's file is still there).
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl Drop for StatsFile {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Owner-only files (0600), like the rest of a bus.
trait PrivateMode {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateMode for std::fs::OpenOptions {
    #[cfg(unix)]
    fn mode_private(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }

    /// Windows: the creator's default security (this user).
    #[cfg(not(unix))]
    fn mode_private(&mut self) -> &mut Self {
        self
    }
}

/// Creates `dir` (and its parents) owner-only (0700) if it is missing.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "framebus-bridge-stats-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn written_files_are_read_back_and_removed_on_drop() {
        let dir = temp_dir("rw");
        let bus = BusName::new("cam0").unwrap();
        let other = BusName::new("cam0.b").unwrap();
        let mut file = StatsFile::new_in(&dir, &bus, Role::In);
        let mut stats = BridgeStats {
            role: Role::In,
            bus: "cam0".into(),
            key: "framebus/cam0".into(),
            pid: std::process::id(),
            frames_published: 7,
            frames_lost: 2,
            dropped_invalid: 1,
            updated_unix_ms: unix_ms(),
            ..BridgeStats::default()
        };
        file.write(&stats);
        // Another bus whose name extends this one's is not reported.
        let mut other_file = StatsFile::new_in(&dir, &other, Role::Out);
        stats.bus = "cam0.b".into();
        stats.role = Role::Out;
        other_file.write(&stats);
        let found = read_stats_in(&dir, &bus);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].alive);
        assert_eq!(found[0].stats.frames(), 7);
        assert_eq!(found[0].stats.dropped(), 3);
        assert_eq!(read_stats_in(&dir, &other).len(), 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(file);
        assert!(read_stats_in(&dir, &bus).is_empty());
        drop(other_file);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn garbage_and_missing_directories_are_skipped() {
        let dir = temp_dir("garbage");
        let bus = BusName::new("cam1").unwrap();
        assert!(read_stats_in(&dir, &bus).is_empty());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cam1.in.1.json"), b"{not json").unwrap();
        std::fs::write(dir.join("cam1.in.2.json"), b"[1, 2]").unwrap();
        assert!(read_stats_in(&dir, &bus).is_empty());
        // A file a killed bridge left is reported as gone, and removed by
        // the next bridge of the bus.
        let dead = BridgeStats {
            bus: "cam1".into(),
            pid: u32::MAX,
            ..BridgeStats::default()
        };
        std::fs::write(
            dir.join("cam1.out.99.json"),
            serde_json::to_vec(&dead).unwrap(),
        )
        .unwrap();
        let found = read_stats_in(&dir, &bus);
        assert_eq!(found.len(), 1);
        assert!(!found[0].alive);
        let next = StatsFile::new_in(&dir, &bus, Role::Out);
        assert!(read_stats_in(&dir, &bus).is_empty());
        drop(next);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
