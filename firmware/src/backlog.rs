//! The offline backlog: a bounded ring of encoded packs waiting for the broker's PUBACK.
//!
//! Packs leave the backlog only when the broker acknowledged them, oldest first. When the
//! ring is full the oldest pack is dropped to make room (fresh readings are worth more than
//! old ones on a dashboard) and its readings are counted; the node reports that count as
//! `droppedReadings` in its next pack, so the gateway can tell a gap in the sequence
//! numbers that the device accounted for from one it did not.
//!
//! Two refinements keep that count exact:
//! - a pack that is being published (see [`Backlog::begin_publish`]) is never the one
//!   dropped while another can be: the broker may already hold it, and dropping it would
//!   count readings that in fact arrive;
//! - a pack that carries a `droppedReadings` report and is itself dropped gives its report
//!   back to the counter ([`Backlog::push_carrying`]), so a long outage that overflows
//!   many times still ends with one report of every reading lost.
//!
//! Storage is `SLOTS` fixed slots of `SLOT_BYTES`: no allocator, and the RAM cost is
//! visible in the type.

/// Identifies one pushed pack (wrapping counter), for acknowledging exactly that pack.
pub type PackId = u32;

/// Why a pack was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BacklogError {
    /// The pack is larger than a slot.
    #[error("pack larger than a backlog slot")]
    TooLarge,
    /// The pack is being published and must not change.
    #[error("pack is being published")]
    InFlight,
    /// No pack at that position.
    #[error("no pack at that position")]
    NoSuchPack,
}

#[derive(Debug, Clone, Copy, Default)]
struct SlotMeta {
    len: u16,
    readings: u16,
    carried: u32,
    id: PackId,
    /// Monotonic ms the pack's readings refer to, while the pack carries no absolute time.
    relative_since_ms: Option<u64>,
}

/// Bounded ring of encoded packs; oldest dropped on overflow.
#[derive(Debug)]
pub struct Backlog<const SLOTS: usize, const SLOT_BYTES: usize> {
    data: [[u8; SLOT_BYTES]; SLOTS],
    meta: [SlotMeta; SLOTS],
    /// A permutation of the slot indices: positions `head..head+len` (mod SLOTS) are the
    /// queued packs oldest first, the others free. Dropping the second-oldest pack is then
    /// a swap of two indices instead of a copy of a slot.
    order: [u16; SLOTS],
    head: usize,
    len: usize,
    in_flight: bool,
    dropped: u32,
    dropped_total: u64,
    next_id: PackId,
}

impl<const SLOTS: usize, const SLOT_BYTES: usize> Default for Backlog<SLOTS, SLOT_BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const SLOTS: usize, const SLOT_BYTES: usize> Backlog<SLOTS, SLOT_BYTES> {
    const CHECK: () = {
        assert!(SLOTS > 0, "a backlog needs at least one slot");
        assert!(SLOTS <= u16::MAX as usize, "too many slots");
        assert!(SLOT_BYTES <= u16::MAX as usize, "slots larger than 64 KiB");
    };

    /// An empty backlog.
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        let mut order = [0u16; SLOTS];
        let mut i = 0;
        while i < SLOTS {
            order[i] = i as u16;
            i += 1;
        }
        Self {
            data: [[0; SLOT_BYTES]; SLOTS],
            meta: [SlotMeta {
                len: 0,
                readings: 0,
                carried: 0,
                id: 0,
                relative_since_ms: None,
            }; SLOTS],
            order,
            head: 0,
            len: 0,
            in_flight: false,
            dropped: 0,
            dropped_total: 0,
            next_id: 0,
        }
    }

    /// Slots in the ring.
    pub const fn capacity(&self) -> usize {
        SLOTS
    }

    /// Packs waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no pack waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the next push drops a pack.
    pub fn is_full(&self) -> bool {
        self.len == SLOTS
    }

    /// Stores an encoded pack holding `readings` readings; if full, drops the oldest and
    /// counts its readings.
    pub fn push(&mut self, pack: &[u8], readings: u16) -> Result<PackId, BacklogError> {
        self.push_carrying(pack, readings, 0)
    }

    /// Like [`Backlog::push`] for a pack that reports `carried` dropped readings: if this
    /// pack is dropped in turn, the report is not lost but returns to the counter.
    pub fn push_carrying(
        &mut self,
        pack: &[u8],
        readings: u16,
        carried: u32,
    ) -> Result<PackId, BacklogError> {
        self.push_entry(pack, readings, carried, None)
    }

    /// Like [`Backlog::push_carrying`], for a pack whose time is relative (the node did
    /// not know the time): `relative_since_ms` is the monotonic time its readings refer
    /// to, so that the node can stamp it later ([`Backlog::relative_since`]).
    pub fn push_entry(
        &mut self,
        pack: &[u8],
        readings: u16,
        carried: u32,
        relative_since_ms: Option<u64>,
    ) -> Result<PackId, BacklogError> {
        if pack.len() > SLOT_BYTES {
            return Err(BacklogError::TooLarge);
        }
        if self.len == SLOTS {
            self.drop_one();
        }
        let slot = usize::from(self.order[(self.head + self.len) % SLOTS]);
        self.data[slot][..pack.len()].copy_from_slice(pack);
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.meta[slot] = SlotMeta {
            len: pack.len() as u16,
            readings,
            carried,
            id,
            relative_since_ms,
        };
        self.len += 1;
        Ok(id)
    }

    /// Counts readings lost outside the backlog (e.g. a pack too large to store), so that
    /// they are reported like overflow drops.
    pub fn count_dropped(&mut self, readings: u32) {
        self.dropped = self.dropped.saturating_add(readings);
        self.dropped_total = self.dropped_total.saturating_add(u64::from(readings));
    }

    /// Returns a report taken with [`Backlog::take_dropped`] that could not be sent, so
    /// the next pack reports it (it is not counted again in [`Backlog::dropped_total`]).
    pub fn restore_dropped(&mut self, readings: u32) {
        self.dropped = self.dropped.saturating_add(readings);
    }

    fn drop_one(&mut self) {
        // Spare the pack being published when there is another to drop.
        if self.in_flight && self.len >= 2 {
            let (a, b) = (self.head, (self.head + 1) % SLOTS);
            self.order.swap(a, b);
        } else {
            self.in_flight = false;
        }
        let slot = usize::from(self.order[self.head]);
        let m = self.meta[slot];
        self.count_dropped(u32::from(m.readings));
        // The carried report was never delivered: give it back, without counting twice.
        self.dropped = self.dropped.saturating_add(m.carried);
        self.pop_front();
    }

    fn pop_front(&mut self) {
        self.head = (self.head + 1) % SLOTS;
        self.len -= 1;
    }

    fn oldest_slot(&self) -> Option<usize> {
        (self.len > 0).then(|| usize::from(self.order[self.head]))
    }

    /// The oldest pack not yet acknowledged (the link publishes this one, QoS 1).
    pub fn oldest(&self) -> Option<&[u8]> {
        self.oldest_entry().map(|(_, p)| p)
    }

    /// The oldest pack and its id.
    pub fn oldest_entry(&self) -> Option<(PackId, &[u8])> {
        let slot = self.oldest_slot()?;
        let m = &self.meta[slot];
        Some((m.id, &self.data[slot][..usize::from(m.len)]))
    }

    /// The oldest pack, marked as being published: until it is acknowledged, overflow
    /// drops the next-oldest pack instead (when there is one). Calling it again (e.g. to
    /// republish after a reconnect) returns the same pack.
    pub fn begin_publish(&mut self) -> Option<(PackId, &[u8])> {
        self.in_flight = self.len > 0;
        self.oldest_entry()
    }

    /// True while the oldest pack is marked as being published.
    pub fn is_publishing(&self) -> bool {
        self.in_flight
    }

    /// Called when the broker acknowledged the oldest pack (PUBACK): it leaves the backlog.
    pub fn ack_oldest(&mut self) {
        if self.len > 0 {
            self.pop_front();
        }
        self.in_flight = false;
    }

    /// Acknowledges pack `id` if it is the oldest; false (and nothing changes) if it is
    /// not, e.g. because it was dropped by overflow while its PUBACK was on the way.
    pub fn ack(&mut self, id: PackId) -> bool {
        match self.oldest_entry() {
            Some((oldest, _)) if oldest == id => {
                self.ack_oldest();
                true
            }
            _ => false,
        }
    }

    /// Readings dropped by overflow since the last call (the node reports it in its next
    /// pack).
    pub fn take_dropped(&mut self) -> u32 {
        core::mem::take(&mut self.dropped)
    }

    /// Readings dropped since boot (not reset by [`Backlog::take_dropped`]).
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Readings held in the queued packs.
    pub fn queued_readings(&self) -> u32 {
        (0..self.len)
            .map(|i| {
                u32::from(self.meta[usize::from(self.order[(self.head + i) % SLOTS])].readings)
            })
            .sum()
    }

    fn slot_at(&self, position: usize) -> Option<usize> {
        (position < self.len).then(|| usize::from(self.order[(self.head + position) % SLOTS]))
    }

    /// The pack at `position` (0 = oldest).
    pub fn get(&self, position: usize) -> Option<&[u8]> {
        let slot = self.slot_at(position)?;
        Some(&self.data[slot][..usize::from(self.meta[slot].len)])
    }

    /// For a pack with a relative time, the monotonic ms its readings refer to.
    pub fn relative_since(&self, position: usize) -> Option<u64> {
        self.meta[self.slot_at(position)?].relative_since_ms
    }

    /// Replaces the bytes of the pack at `position` (a re-stamped version of the same
    /// readings: id, reading count and carried report stay). Refused for the pack being
    /// published, whose bytes the broker may already hold.
    pub fn replace(
        &mut self,
        position: usize,
        pack: &[u8],
        relative_since_ms: Option<u64>,
    ) -> Result<(), BacklogError> {
        if pack.len() > SLOT_BYTES {
            return Err(BacklogError::TooLarge);
        }
        if position == 0 && self.in_flight {
            return Err(BacklogError::InFlight);
        }
        let slot = self.slot_at(position).ok_or(BacklogError::NoSuchPack)?;
        self.data[slot][..pack.len()].copy_from_slice(pack);
        self.meta[slot].len = pack.len() as u16;
        self.meta[slot].relative_since_ms = relative_since_ms;
        Ok(())
    }

    /// The queued packs, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len).map(move |i| {
            let slot = usize::from(self.order[(self.head + i) % SLOTS]);
            &self.data[slot][..usize::from(self.meta[slot].len)]
        })
    }
}
