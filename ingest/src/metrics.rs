//! Names of the metrics this library records through the `metrics` facade. The gateway
//! installs the exporter (Prometheus) and may call [`describe`] once at start-up.

/// Messages processed, by `format` (or `none` when no route matched).
pub const MESSAGES: &str = "ingest_messages_total";
/// Readings newly committed to the hot tier.
pub const READINGS_COMMITTED: &str = "ingest_readings_committed_total";
/// Refused messages or readings, by `reason`.
pub const REJECTED: &str = "ingest_rejected_total";
/// Readings ignored because (device, metric, time) was already stored.
pub const DUPLICATES: &str = "ingest_duplicates_total";
/// Seconds per batch transaction (decode excluded).
pub const COMMIT_SECONDS: &str = "ingest_commit_seconds";
/// Seconds from a reading's device time to its commit.
pub const END_TO_END_SECONDS: &str = "ingest_end_to_end_seconds";
/// Seconds from a message's receipt to its state transaction (hot tier, outbox).
pub const RECEIVE_TO_APPLIED: &str = "ingest_receive_to_applied_seconds";
/// Seconds an outbox entry waited between its transaction and the store's acceptance.
pub const OUTBOX_TO_STORED: &str = "forward_outbox_to_stored_seconds";
/// Entries waiting in the outbox.
pub const OUTBOX_DEPTH: &str = "outbox_depth_entries";
/// Bytes waiting in the outbox.
pub const OUTBOX_BYTES: &str = "outbox_bytes";
/// Readings the store accepted.
pub const FORWARD_READINGS: &str = "forward_readings_total";
/// Store writes retried (429, 5xx, timeouts, connection errors).
pub const FORWARD_RETRIES: &str = "forward_retries_total";
/// Seconds per store write request.
pub const FORWARD_STORE_SECONDS: &str = "forward_store_seconds";
/// Dead letters dropped, oldest first, to keep them within `deadletter_max_bytes`.
pub const DEADLETTERS_DROPPED: &str = "deadletters_dropped_total";
/// Gauge: 1 while the store refuses writes with 401, 403 or 404 (a wrong token,
/// password, org or bucket), else 0.
pub const STORE_CONFIG_ERROR: &str = "store_config_error";
/// Readings dropped from the outbox by the `drop-oldest` policy.
pub const OUTBOX_DROPPED_READINGS: &str = "outbox_dropped_readings_total";
/// Gaps in device sequence numbers (missed messages), by `device`.
pub const DEVICE_GAPS: &str = "device_gaps_total";
/// Messages seen again (sequence number not newer than the last one), by `device`.
pub const DEVICE_REDELIVERIES: &str = "device_redeliveries_total";

/// Torn log tails truncated when the log was opened after a crash.
pub const LOG_TORN_TAILS: &str = "log_torn_tails_total";

/// Bytes logged and not yet applied to the state.
pub const LOG_BACKLOG_BYTES: &str = "log_backlog_bytes";
/// Bytes of message-log segments on disk.
pub const LOG_DISK_BYTES: &str = "log_disk_bytes";
/// Records the applier is behind the durable end of the log.
pub const LOG_APPLY_LAG: &str = "log_apply_lag_records";
/// Messages appended to the log.
pub const LOG_APPENDED: &str = "log_appended_total";
/// Redeliveries (DUP=1) of messages already in the log: acknowledged, not logged again.
pub const LOG_REDELIVERIES: &str = "log_redeliveries_skipped_total";
/// Seconds per group commit (write + fdatasync).
pub const LOG_COMMIT_SECONDS: &str = "log_commit_seconds";
/// Seconds from a message's receipt to its log record being durable.
pub const LOG_RECEIVE_TO_DURABLE: &str = "log_receive_to_durable_seconds";
/// Messages per group commit.
pub const LOG_COMMIT_MESSAGES: &str = "log_commit_messages";
/// Seconds per flush of the hot tier's head into chunks.
pub const HOT_FLUSH_SECONDS: &str = "hot_flush_seconds";
/// Readings written from the head into chunks.
pub const HOT_FLUSHED_READINGS: &str = "hot_flushed_readings_total";
/// Readings held in the hot tier's head.
pub const HOT_HEAD_READINGS: &str = "hot_head_readings";

/// Registers descriptions and units with the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(MESSAGES, "Messages processed, by format");
    describe_counter!(
        READINGS_COMMITTED,
        "Readings newly committed to the hot tier"
    );
    describe_counter!(REJECTED, "Refused messages or readings, by reason");
    describe_counter!(DUPLICATES, "Readings already stored (redeliveries)");
    describe_histogram!(COMMIT_SECONDS, Unit::Seconds, "Batch transaction time");
    describe_histogram!(
        HOT_FLUSH_SECONDS,
        Unit::Seconds,
        "Time to write the hot tier's head into chunks"
    );
    describe_counter!(
        HOT_FLUSHED_READINGS,
        "Readings written from the hot tier's head into chunks"
    );
    describe_gauge!(
        HOT_HEAD_READINGS,
        "Readings held in the hot tier's head (memory)"
    );
    describe_histogram!(END_TO_END_SECONDS, Unit::Seconds, "Device time to commit");
    describe_histogram!(
        RECEIVE_TO_APPLIED,
        Unit::Seconds,
        "Receipt of a message to its state transaction"
    );
    describe_histogram!(
        OUTBOX_TO_STORED,
        Unit::Seconds,
        "Outbox entry committed to accepted by the store"
    );
    describe_gauge!(OUTBOX_DEPTH, "Entries waiting in the outbox");
    describe_gauge!(OUTBOX_BYTES, Unit::Bytes, "Bytes waiting in the outbox");
    describe_counter!(FORWARD_READINGS, "Readings the store accepted");
    describe_counter!(FORWARD_RETRIES, "Store writes retried");
    describe_histogram!(FORWARD_STORE_SECONDS, Unit::Seconds, "Store write latency");
    describe_counter!(
        DEADLETTERS_DROPPED,
        "Dead letters dropped, oldest first, to stay within ingest.deadletter_max_bytes"
    );
    describe_gauge!(
        STORE_CONFIG_ERROR,
        "1 while the store refuses writes with 401, 403 or 404 (token, credentials, org or bucket)"
    );
    describe_counter!(
        OUTBOX_DROPPED_READINGS,
        "Readings dropped by the drop-oldest policy"
    );
    describe_counter!(
        DEVICE_GAPS,
        "Missed device messages (sequence gaps), by device"
    );
    describe_counter!(DEVICE_REDELIVERIES, "Device messages seen again, by device");
    describe_gauge!(LOG_BACKLOG_BYTES, Unit::Bytes, "Log bytes not yet applied");
    describe_gauge!(LOG_DISK_BYTES, Unit::Bytes, "Message-log segments on disk");
    describe_gauge!(LOG_APPLY_LAG, "Log records durable but not yet applied");
    describe_counter!(LOG_APPENDED, "Messages appended to the message log");
    describe_counter!(
        LOG_REDELIVERIES,
        "Broker redeliveries of messages already logged (acked, not stored again)"
    );
    describe_histogram!(
        LOG_COMMIT_SECONDS,
        Unit::Seconds,
        "Log group commit (write + fdatasync)"
    );
    describe_histogram!(LOG_COMMIT_MESSAGES, "Messages per log group commit");
    describe_histogram!(
        LOG_RECEIVE_TO_DURABLE,
        Unit::Seconds,
        "Receipt of a message to its log record being durable"
    );
    describe_counter!(
        LOG_TORN_TAILS,
        "Torn message-log tails truncated at start after a crash"
    );
}
