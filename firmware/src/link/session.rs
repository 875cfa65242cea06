//! One MQTT 5 session over an open socket: CONNECT with the last will, birth messages,
//! the backlog's QoS 1 publishes and keep-alive, until the connection fails or the
//! caller asks to stop.

use core::{future::Future, num::NonZero, pin::Pin};

use embassy_futures::select::{Either3, select3};
use rust_mqtt::{
    Bytes,
    buffer::BumpBuffer,
    client::{
        Client, MqttError,
        event::Event,
        options::{
            ConnectOptions, DisconnectOptions, PublicationOptions, TopicReference, WillOptions,
        },
    },
    config::KeepAlive as MqttKeepAlive,
    types::{MqttBinary, MqttString, TopicName},
};
use schemas::topic::{Channel, STATUS_OFFLINE, STATUS_ONLINE};

use super::{
    Backoff, Clock, Device, LinkConfig, LinkError, META_MAX,
    keepalive::{KeepAlive, KeepAliveAction},
    outbox::{AckOutcome, Outbox},
    runner::{LinkStats, Waited, sample_while},
};

/// The client as the link uses it: no subscriptions, one incoming QoS slot (it never
/// subscribes, but rust-mqtt requires one), four outgoing QoS 1 slots (status, meta,
/// the pack in flight, the goodbye), one user property, one outgoing topic alias (the
/// `up` topic, which then costs two bytes per pack instead of fifty).
type MqttClient<'c, T> = Client<'c, 'c, T, BumpBuffer<'c>, 1, 1, 4, 0, 1, 0, 1>;

/// Alias the `up` topic gets when the broker allows aliases.
const UP_ALIAS: NonZero<u16> = NonZero::<u16>::MIN;

/// Runs one session on `conn`. Returns `Ok(())` when `stop` fired and the session was
/// closed gracefully (retained `offline` published, DISCONNECT sent), or why it ended.
#[allow(clippy::too_many_arguments)] // the session's inputs, each distinct; a struct would only rename them
pub(crate) async fn run<T, D, K, S>(
    cfg: &LinkConfig<'_>,
    conn: T,
    device: &mut D,
    clock: &K,
    scratch: &mut [u8],
    mut stop: Pin<&mut S>,
    backoff: &mut Backoff,
    stats: &mut LinkStats,
) -> Result<(), LinkError>
where
    T: embedded_io_async::Read + embedded_io_async::Write,
    D: Device,
    K: Clock,
    S: Future<Output = ()>,
{
    let status_topic = device.topic(Channel::Status);
    let meta_topic = device.topic(Channel::Meta);
    let up_topic = device.topic(Channel::Up);
    // Holds the `meta` payload for the birth, then stages each pack for publishing.
    let mut stage = [0u8; META_MAX];
    let meta_len = device.meta_payload(&mut stage);

    let mut bump = BumpBuffer::new(scratch);
    let mut client: MqttClient<'_, T> = Client::new(&mut bump);

    // CONNECT, with the last will.
    let will = WillOptions::new(topic_name(&status_topic)?, binary(STATUS_OFFLINE)?)
        .at_least_once()
        .retain();
    let mut options = ConnectOptions::new().clean_start().will(will);
    if let Some(s) = NonZero::new(cfg.keep_alive_s) {
        options = options.keep_alive(MqttKeepAlive::Seconds(s));
    }
    if let Some(user) = cfg.username {
        options = options.user_name(string(user)?);
    }
    if let Some(password) = cfg.password {
        options = options.password(binary(password)?);
    }
    let client_id = string(cfg.client_id)?;
    let deadline = clock.now_ms() + cfg.op_timeout();
    match sample_while(
        device,
        clock,
        stop.as_mut(),
        deadline,
        client.connect(conn, &options, Some(client_id)),
    )
    .await
    {
        Waited::Done(Ok(_)) => {}
        Waited::Done(Err(e)) => return Err(classify(e)),
        Waited::Stopped => return Ok(()),
        Waited::TimedOut => return Err(LinkError::Timeout),
    }
    let now = clock.now_ms();
    backoff.on_connected(now);
    stats.connects += 1;
    let agreed_keep_alive = match client.shared_config().keep_alive {
        MqttKeepAlive::Infinite => 0,
        MqttKeepAlive::Seconds(s) => s.get(),
    };
    let mut keepalive = KeepAlive::new(cfg.clock_ms(u64::from(agreed_keep_alive) * 1_000), now);
    let aliases = client.server_config().topic_alias_maximum >= UP_ALIAS.get();

    // Birth: retained status and description. Their PUBACKs are not waited for: the
    // broker handles a connection's packets in order, and a lost birth is repeated on
    // the next connection anyway.
    publish(
        &mut client,
        clock,
        cfg,
        &status_topic,
        STATUS_ONLINE,
        true,
        None,
    )
    .await?;
    if let Some(len) = meta_len {
        let meta = stage.get(..len).unwrap_or_default();
        match publish(&mut client, clock, cfg, &meta_topic, meta, true, None).await {
            // A broker that takes only small packets gets no description, but readings.
            Err(LinkError::TooLarge) => {}
            other => {
                other?;
            }
        }
    }
    keepalive.on_sent(clock.now_ms());

    let mut outbox = Outbox::new();
    let mut up_mapped = false;
    loop {
        let now = clock.now_ms();
        device.poll(now);

        if outbox.can_send()
            && let Some(pack) = device.oldest()
        {
            let alias = match (aliases, up_mapped) {
                (false, _) => None,
                (true, false) => Some(false),
                (true, true) => Some(true),
            };
            if let Some(staged) = stage.get_mut(..pack.len()) {
                // A copy frees the node: it keeps sampling while a slow socket takes
                // the pack (a flaky access point can hold a write for seconds).
                staged.copy_from_slice(pack);
                let staged = &*staged;
                let options = publication(&up_topic, false, alias)?;
                let deadline = now + cfg.op_timeout();
                let sent = sample_while(
                    device,
                    clock,
                    stop.as_mut(),
                    deadline,
                    client.publish(&options, Bytes::from(staged)),
                )
                .await;
                let id = match sent {
                    Waited::Done(Err(e)) if classify(e.clone()) == LinkError::TooLarge => {
                        device.discard_oldest();
                        stats.discarded += 1;
                        continue;
                    }
                    Waited::Done(r) => r.map_err(classify)?,
                    // Mid-packet: no clean goodbye possible; the will says `offline`.
                    Waited::Stopped => return Ok(()),
                    Waited::TimedOut => return Err(LinkError::Timeout),
                };
                let id = id.map(|id| id.get().get()).ok_or(LinkError::Client)?;
                outbox.on_published(id, staged, now);
            } else {
                // Larger than the staging buffer: published in place, sampling waits.
                let id = match publish(&mut client, clock, cfg, &up_topic, pack, false, alias).await
                {
                    Err(LinkError::TooLarge) => {
                        device.discard_oldest();
                        stats.discarded += 1;
                        continue;
                    }
                    other => other?,
                };
                // QoS 1 always yields an identifier; its absence would be a client bug.
                let id = id.ok_or(LinkError::Client)?;
                outbox.on_published(id, pack, now);
            }
            up_mapped |= aliases;
            keepalive.on_sent(now);
            stats.published += 1;
        }

        match keepalive.poll(now) {
            KeepAliveAction::Idle => {}
            KeepAliveAction::SendPing => {
                let deadline = now + cfg.op_timeout();
                with_deadline(clock, deadline, client.ping())
                    .await?
                    .map_err(classify)?;
                keepalive.on_ping_sent(now);
            }
            KeepAliveAction::Dead => return Err(LinkError::Timeout),
        }
        if now >= outbox.deadline(cfg.op_timeout()) {
            return Err(LinkError::Timeout);
        }

        let wake = device
            .next_deadline()
            .min(keepalive.next_deadline())
            .min(outbox.deadline(cfg.op_timeout()));
        // Only the header read may be abandoned: rust-mqtt documents it as cancel-safe.
        let header =
            match select3(client.poll_header(), stop.as_mut(), clock.sleep_until(wake)).await {
                Either3::First(header) => header.map_err(classify)?,
                Either3::Second(()) => {
                    settle(&mut client, clock, cfg, &mut outbox, device, stats).await;
                    goodbye(&mut client, clock, cfg, &status_topic).await;
                    return Ok(());
                }
                Either3::Third(()) => continue,
            };
        let deadline = clock.now_ms() + cfg.op_timeout();
        let event = with_deadline(clock, deadline, client.poll_body(header))
            .await?
            .map_err(classify)?;
        keepalive.on_received();
        on_event(event, &mut outbox, device, stats)?;
    }
}

/// Applies what the broker said to the backlog.
fn on_event<D: Device, const I: usize, const P: usize>(
    event: Event<'_, I, P>,
    outbox: &mut Outbox,
    device: &mut D,
    stats: &mut LinkStats,
) -> Result<(), LinkError> {
    match event {
        Event::PublishAcknowledged(ack) => {
            let id = ack.packet_identifier.get().get();
            if outbox.on_puback(id, device.oldest()) == AckOutcome::AckOldest {
                device.ack_oldest();
                stats.acked += 1;
            }
            Ok(())
        }
        Event::PublishRejected(rej) if outbox.on_rejected(rej.packet_identifier.get().get()) => {
            Err(LinkError::Rejected(rej.reason_code.value()))
        }
        // Pings, and packets of subscriptions the link never makes.
        _ => Ok(()),
    }
}

/// Before a graceful end, waits (bounded) for the PUBACK of the pack in flight, so that
/// a pack the broker has is not published again after the restart.
async fn settle<T, D, K>(
    client: &mut MqttClient<'_, T>,
    clock: &K,
    cfg: &LinkConfig<'_>,
    outbox: &mut Outbox,
    device: &mut D,
    stats: &mut LinkStats,
) where
    T: embedded_io_async::Read + embedded_io_async::Write,
    D: Device,
    K: Clock,
{
    let deadline = clock.now_ms() + cfg.op_timeout();
    while !outbox.can_send() {
        let Ok(Ok(event)) = with_deadline(clock, deadline, client.poll()).await else {
            return;
        };
        if on_event(event, outbox, device, stats).is_err() {
            return;
        }
    }
}

/// Publishes with QoS 1. `alias`: `None` names the topic, `Some(false)` names it and maps
/// it to [`UP_ALIAS`], `Some(true)` uses the alias alone.
async fn publish<T, K>(
    client: &mut MqttClient<'_, T>,
    clock: &K,
    cfg: &LinkConfig<'_>,
    topic: &str,
    payload: &[u8],
    retain: bool,
    alias: Option<bool>,
) -> Result<Option<u16>, LinkError>
where
    T: embedded_io_async::Read + embedded_io_async::Write,
    K: Clock,
{
    let options = publication(topic, retain, alias)?;
    let deadline = clock.now_ms() + cfg.op_timeout();
    let id = with_deadline(
        clock,
        deadline,
        client.publish(&options, Bytes::from(payload)),
    )
    .await?
    .map_err(classify)?;
    Ok(id.map(|id| id.get().get()))
}

/// QoS 1 publication options; `alias` as in [`publish`].
fn publication(
    topic: &str,
    retain: bool,
    alias: Option<bool>,
) -> Result<PublicationOptions<'_>, LinkError> {
    let name = topic_name(topic)?;
    let reference = match alias {
        None => TopicReference::Name(name),
        Some(false) => TopicReference::Mapping(name, UP_ALIAS),
        Some(true) => TopicReference::Alias(UP_ALIAS),
    };
    let options = PublicationOptions::new(reference).at_least_once();
    Ok(if retain { options.retain() } else { options })
}

/// Graceful end: the retained status says `offline` (a DISCONNECT suppresses the will),
/// then DISCONNECT. Failures are moot: the session is over either way.
async fn goodbye<T, K>(
    client: &mut MqttClient<'_, T>,
    clock: &K,
    cfg: &LinkConfig<'_>,
    status: &str,
) where
    T: embedded_io_async::Read + embedded_io_async::Write,
    K: Clock,
{
    if publish(client, clock, cfg, status, STATUS_OFFLINE, true, None)
        .await
        .is_ok()
    {
        let deadline = clock.now_ms() + cfg.op_timeout();
        let _ = with_deadline(
            clock,
            deadline,
            client.disconnect(&DisconnectOptions::new()),
        )
        .await;
    }
}

/// Runs `fut` but gives up at `deadline_ms`.
async fn with_deadline<F: Future, K: Clock>(
    clock: &K,
    deadline_ms: u64,
    fut: F,
) -> Result<F::Output, LinkError> {
    match embassy_futures::select::select(fut, clock.sleep_until(deadline_ms)).await {
        embassy_futures::select::Either::First(v) => Ok(v),
        embassy_futures::select::Either::Second(()) => Err(LinkError::Timeout),
    }
}

fn classify<const P: usize>(e: MqttError<'_, P>) -> LinkError {
    match e {
        MqttError::Network(kind) => LinkError::Network(kind),
        MqttError::Server => LinkError::Protocol,
        MqttError::Disconnect { reason, .. } => LinkError::Refused(reason.value()),
        // Recoverable: the connection stays usable, only this packet cannot go.
        MqttError::ServerMaximumPacketSizeExceeded | MqttError::PacketMaximumLengthExceeded => {
            LinkError::TooLarge
        }
        _ => LinkError::Client,
    }
}

fn string(s: &str) -> Result<MqttString<'_>, LinkError> {
    MqttString::from_str(s).map_err(|_| LinkError::InvalidConfig)
}

fn binary(b: &[u8]) -> Result<MqttBinary<'_>, LinkError> {
    MqttBinary::from_slice(b).map_err(|_| LinkError::InvalidConfig)
}

fn topic_name(topic: &str) -> Result<TopicName<'_>, LinkError> {
    TopicName::new(string(topic)?).ok_or(LinkError::InvalidConfig)
}
