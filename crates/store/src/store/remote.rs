//! The store's side of a remote index: shipping by hand and the remote positions (the shipper
//! thread is `remote/shipper.rs`).

use crate::error::{Error, Result};
use crate::layout::store_id;
use crate::remote::{advance, ahead_lanes, lanes_view, next_batch};
use crate::status::RemoteLag;
use crate::target::RemoteTarget;

use super::Store;

impl Store {
    /// Ships every entry the remote index `target` does not have yet, from this process (beside
    /// any running shipper: the target's transactions keep it exactly-once), until caught up
    /// with what the lanes held when it started or later; returns the positions afterwards.
    /// Writes the store id (`store.id`) first if the folder has none. Lanes whose remote
    /// position is ahead of the journal are not shipped: see [`RemoteLag::problems`].
    pub fn sync_remote(&self, target: &dyn RemoteTarget) -> Result<RemoteLag> {
        let id = self.store_id_for_remote()?;
        let mut conn = target.connect()?;
        let mut positions = conn.applied_positions(&id)?;
        let mut shipped = 0;
        let mut next_lane = 0;
        loop {
            let (lanes, _) = lanes_view(&self.inner, &positions)?;
            let batch = next_batch(&self.inner, &mut positions, &mut next_lane, &ahead_lanes(&lanes))?;
            if batch.entries.is_empty() {
                break;
            }
            let stats = conn.apply_batch(&id, &batch.entries)?;
            shipped += batch.entries.len() as u64 - stats.skipped;
            advance(&mut positions, &batch);
        }
        let positions = conn.applied_positions(&id)?;
        let (lanes, missing_lanes) = lanes_view(&self.inner, &positions)?;
        Ok(RemoteLag { target: target.describe(), store_id: id, lanes, missing_lanes, shipped })
    }

    /// This store's positions in the remote index `target`, against its lanes (nothing shipped).
    pub fn remote_lag(&self, target: &dyn RemoteTarget) -> Result<RemoteLag> {
        let id = self.store_id_for_remote()?;
        let positions = target.connect()?.applied_positions(&id)?;
        let (lanes, missing_lanes) = lanes_view(&self.inner, &positions)?;
        Ok(RemoteLag { target: target.describe(), store_id: id, lanes, missing_lanes, shipped: 0 })
    }

    /// This store's stable id (`store.id`), created if missing.
    pub fn store_id(&self) -> Result<String> {
        self.store_id_for_remote()
    }

    fn store_id_for_remote(&self) -> Result<String> {
        store_id(&self.inner.dir, true)?.ok_or_else(|| Error::NotAStore { path: self.inner.dir.clone() })
    }
}
