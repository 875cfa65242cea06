//! Backlog: order, acknowledgement, and exact overflow accounting.

use firmware::backlog::{Backlog, BacklogError};

fn pack(i: u8) -> Vec<u8> {
    vec![i; usize::from(i % 7) + 1]
}

#[test]
fn packs_leave_oldest_first_and_only_when_acknowledged() {
    let mut b: Backlog<4, 16> = Backlog::new();
    assert!(b.is_empty());
    assert_eq!(b.oldest(), None);
    for i in 0..3 {
        b.push(&pack(i), 5).unwrap();
    }
    assert_eq!(b.len(), 3);
    // Looking does not remove.
    assert_eq!(b.oldest(), Some(&pack(0)[..]));
    assert_eq!(b.oldest(), Some(&pack(0)[..]));
    b.ack_oldest();
    assert_eq!(b.oldest(), Some(&pack(1)[..]));
    assert_eq!(
        b.iter().collect::<Vec<_>>(),
        vec![&pack(1)[..], &pack(2)[..]]
    );
    assert_eq!(b.queued_readings(), 10);
    b.ack_oldest();
    b.ack_oldest();
    assert!(b.is_empty());
    b.ack_oldest(); // harmless when empty
    assert_eq!(b.take_dropped(), 0);
}

#[test]
fn overflow_drops_the_oldest_and_counts_its_readings() {
    let mut b: Backlog<3, 16> = Backlog::new();
    for i in 0..3u8 {
        b.push(&pack(i), u16::from(i) + 1).unwrap(); // 1, 2, 3 readings
    }
    assert!(b.is_full());
    b.push(&pack(3), 4).unwrap(); // drops pack 0 (1 reading)
    b.push(&pack(4), 5).unwrap(); // drops pack 1 (2 readings)
    assert_eq!(b.len(), 3);
    assert_eq!(
        b.iter().collect::<Vec<_>>(),
        vec![&pack(2)[..], &pack(3)[..], &pack(4)[..]]
    );
    assert_eq!(b.take_dropped(), 3);
    // Reported once: the counter restarts.
    assert_eq!(b.take_dropped(), 0);
    assert_eq!(b.dropped_total(), 3);
}

#[test]
fn a_pack_too_large_is_refused_and_nothing_is_dropped() {
    let mut b: Backlog<2, 8> = Backlog::new();
    b.push(&[1; 8], 1).unwrap();
    b.push(&[2; 8], 1).unwrap();
    assert_eq!(b.push(&[3; 9], 1), Err(BacklogError::TooLarge));
    assert_eq!(b.len(), 2);
    assert_eq!(b.take_dropped(), 0);
}

#[test]
fn the_pack_being_published_is_not_the_one_dropped() {
    let mut b: Backlog<3, 16> = Backlog::new();
    for i in 0..3 {
        b.push(&pack(i), 2).unwrap();
    }
    let (id, p) = b.begin_publish().unwrap();
    assert_eq!(p, &pack(0)[..]);
    b.push(&pack(3), 2).unwrap(); // full: drops pack 1, not the in-flight pack 0
    assert_eq!(b.oldest(), Some(&pack(0)[..]));
    assert!(b.ack(id));
    assert_eq!(
        b.iter().collect::<Vec<_>>(),
        vec![&pack(2)[..], &pack(3)[..]]
    );
    assert_eq!(b.take_dropped(), 2);
}

#[test]
fn an_ack_for_a_pack_no_longer_oldest_changes_nothing() {
    let mut b: Backlog<1, 16> = Backlog::new();
    let first = b.push(&pack(0), 1).unwrap();
    // One slot: the in-flight pack is the only one and must go.
    b.begin_publish();
    let second = b.push(&pack(1), 1).unwrap();
    assert!(!b.ack(first));
    assert_eq!(b.oldest(), Some(&pack(1)[..]));
    assert!(b.ack(second));
    assert!(b.is_empty());
}

#[test]
fn a_dropped_report_is_given_back() {
    // A long outage: packs carrying droppedReadings reports are dropped in turn. However
    // many times it overflows, the reports add up to every reading lost.
    let mut b: Backlog<2, 16> = Backlog::new();
    let mut lost = 0u64;
    let mut reported_in_surviving_packs = Vec::new();
    for i in 0..50u8 {
        let carried = b.take_dropped();
        let readings = 3;
        b.push_carrying(&[i, (carried & 0xFF) as u8], readings, carried)
            .unwrap();
        reported_in_surviving_packs.push((i, carried));
        lost = b.dropped_total();
    }
    // What the two surviving packs report, plus what is still pending, is every loss.
    let surviving: Vec<u8> = b.iter().map(|p| p[0]).collect();
    let reported: u64 = reported_in_surviving_packs
        .iter()
        .filter(|(i, _)| surviving.contains(i))
        .map(|(_, c)| u64::from(*c))
        .sum();
    assert_eq!(reported + u64::from(b.take_dropped()), lost);
    assert_eq!(lost, 48 * 3);
}

#[test]
fn count_and_restore_dropped() {
    let mut b: Backlog<2, 16> = Backlog::new();
    b.count_dropped(7);
    assert_eq!(b.dropped_total(), 7);
    let taken = b.take_dropped();
    b.restore_dropped(taken);
    assert_eq!(b.take_dropped(), 7);
    assert_eq!(b.dropped_total(), 7);
}

#[test]
fn wraps_around_many_times() {
    let mut b: Backlog<5, 4> = Backlog::new();
    let mut next_out = 0u32;
    for i in 0..1000u32 {
        b.push(&i.to_le_bytes(), 1).unwrap();
        if i % 3 == 0 {
            let oldest = u32::from_le_bytes(b.oldest().unwrap().try_into().unwrap());
            assert!(oldest >= next_out);
            next_out = oldest + 1;
            b.ack_oldest();
        }
    }
    let left: Vec<u32> = b
        .iter()
        .map(|p| u32::from_le_bytes(p.try_into().unwrap()))
        .collect();
    assert_eq!(left, (996..1000).collect::<Vec<_>>()); // 999 was acknowledged
    assert_eq!(b.dropped_total() + 334 + 4, 1000);
}

#[test]
fn replace_keeps_identity_and_refuses_the_pack_in_flight() {
    use firmware::backlog::BacklogError;
    let mut b: Backlog<3, 16> = Backlog::new();
    let id0 = b.push_entry(&[1, 1], 2, 0, Some(60_000)).unwrap();
    b.push_entry(&[2, 2], 2, 5, Some(120_000)).unwrap();
    assert_eq!(b.relative_since(0), Some(60_000));
    assert_eq!(b.relative_since(1), Some(120_000));
    assert_eq!(b.relative_since(2), None);

    b.replace(1, &[9, 9, 9], None).unwrap();
    assert_eq!(b.get(1), Some(&[9u8, 9, 9][..]));
    assert_eq!(b.relative_since(1), None);
    assert_eq!(b.replace(1, &[0; 17], None), Err(BacklogError::TooLarge));
    assert_eq!(b.replace(2, &[0], None), Err(BacklogError::NoSuchPack));

    b.begin_publish();
    assert_eq!(b.replace(0, &[7], None), Err(BacklogError::InFlight));
    assert_eq!(b.get(0), Some(&[1u8, 1][..]));
    assert!(b.ack(id0));
    // The replaced pack kept its carried report: dropping it gives the report back.
    b.push(&[3], 1).unwrap();
    b.push(&[4], 1).unwrap();
    b.push(&[5], 1).unwrap(); // drops the replaced pack: 2 readings + 5 carried
    assert_eq!(b.take_dropped(), 7);
    assert_eq!(b.dropped_total(), 2);
}
