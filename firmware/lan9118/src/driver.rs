//! The driver proper: bring-up, frames in and out, link state and counters.

use crate::bus::RegisterBus;
use crate::regs::{
    BYTE_TEST_VALUE, INT_STS_ALL, MacCsr, PHY_ADDR, PhyReg, Reg, RxFifoInf, RxStatus, TxFifoInf,
    TxStatus, hw_cfg, mac_cr, mac_csr_cmd, mii_acc, phy, pmt_ctrl, rx_cfg, tx_cfg, tx_cmd,
};

/// Largest frame the driver sends or delivers, without the FCS: a 1500-byte MTU plus the
/// 14-byte Ethernet header.
pub const MAX_FRAME: usize = 1514;
/// Smallest frame: an Ethernet header.
pub const MIN_FRAME: usize = 14;
/// Bytes of FCS the chip appends to every received frame.
const FCS: usize = 4;

/// Which bounded wait gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The soft reset did not complete (HW_CFG.SRST set or PMT_CTRL.READY clear).
    Reset,
    /// A MAC CSR access stayed busy.
    MacCsr,
    /// An MII (PHY) access stayed busy.
    Mii,
    /// The TX data FIFO did not free room for the frame.
    TxSpace,
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// BYTE_TEST did not read back `0x8765_4321`: no chip, wrong address or byte order.
    #[error("no LAN9118 answers (BYTE_TEST read {0:#010x})")]
    NotPresent(u32),
    /// A bounded wait on the chip gave up.
    #[error("LAN9118 did not finish in time: {0:?}")]
    Timeout(Wait),
    /// A frame to send is shorter than a header or longer than [`MAX_FRAME`].
    #[error("frame of {0} bytes cannot be sent (14..=1514)")]
    FrameLength(usize),
    /// A received frame was flagged bad by the MAC (CRC, runt, too long); it was read
    /// out of the FIFO and counted in [`Stats::rx_errors`].
    #[error("received frame has errors (RX status {0:#010x})")]
    RxFrame(u32),
    /// A received frame did not fit the caller's buffer; it was read out of the FIFO
    /// and counted in [`Stats::rx_too_large`].
    #[error("received frame of {0} bytes does not fit the buffer")]
    BufferTooSmall(usize),
    /// The RX status FIFO held an impossible entry (zero length, or longer than what the
    /// data FIFO holds), so the data FIFO's frame boundaries were unknown; both FIFOs
    /// were dumped and the frames they held counted in [`Stats::rx_dumped`].
    #[error("RX FIFO out of step ({0} frames dumped)")]
    RxDesync(u32),
}

/// Driver settings.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Register polls before a wait gives up with [`Error::Timeout`]. Default: 100 000
    /// (tens of ms on a 25 MHz Cortex-M4; the reset takes well under 1 ms on the chip
    /// and no time at all in QEMU).
    pub spin_limit: u32,
    /// MAC address to program; `None` keeps the one the chip loaded from its EEPROM
    /// (QEMU's `-nic ...,mac=`). Default: `None`.
    pub mac: Option<[u8; 6]>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            spin_limit: 100_000,
            mac: None,
        }
    }
}

/// Counters of everything the driver did with frames; a frame that did not make it is
/// always in one of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames delivered to the caller.
    pub rx_frames: u32,
    /// Frames read out and discarded because the MAC flagged them bad.
    pub rx_errors: u32,
    /// Frames read out and discarded because they did not fit the caller's buffer.
    pub rx_too_large: u32,
    /// Frames discarded by an RX dump after a FIFO desync.
    pub rx_dumped: u32,
    /// Frames the chip reported dropping for want of FIFO space (RX_DROP).
    pub rx_chip_dropped: u32,
    /// Frames handed to the chip.
    pub tx_frames: u32,
    /// Frames the chip reported as failed (TX status error summary).
    pub tx_errors: u32,
}

/// A LAN9118 brought up for 10/100 Ethernet: unicast to its own address plus broadcast,
/// no interrupts, polling.
#[derive(Debug)]
pub struct Lan9118<B: RegisterBus> {
    bus: B,
    cfg: Config,
    mac: [u8; 6],
    id_rev: u32,
    next_tag: u16,
    stats: Stats,
}

impl<B: RegisterBus> Lan9118<B> {
    /// Resets the chip and brings it up: checks it is there, soft-resets it, sets the MAC
    /// address, starts PHY auto-negotiation, enables the receiver and transmitter.
    pub fn new(bus: B, cfg: Config) -> Result<Self, Error> {
        let mut nic = Self {
            bus,
            cfg,
            mac: [0; 6],
            id_rev: 0,
            next_tag: 1,
            stats: Stats::default(),
        };
        nic.init()?;
        Ok(nic)
    }

    fn init(&mut self) -> Result<(), Error> {
        let byte_test = self.bus.read(Reg::ByteTest);
        if byte_test != BYTE_TEST_VALUE {
            return Err(Error::NotPresent(byte_test));
        }
        self.bus.write(Reg::HwCfg, hw_cfg::SRST);
        self.wait(Wait::Reset, |bus| {
            bus.read(Reg::HwCfg) & hw_cfg::SRST == 0
                && bus.read(Reg::PmtCtrl) & pmt_ctrl::READY != 0
        })?;
        self.id_rev = self.bus.read(Reg::IdRev);

        // Polling only: no interrupt sources, pin disabled, stale status cleared.
        self.bus.write(Reg::IntEn, 0);
        self.bus.write(Reg::IrqCfg, 0);
        self.bus.write(Reg::IntSts, INT_STS_ALL);
        // 5 KiB TX FIFO (the reset default), which leaves ~10 KiB to RX.
        self.bus
            .write(Reg::HwCfg, hw_cfg::MBO | (5 << hw_cfg::TX_FIF_SZ_SHIFT));

        if let Some(mac) = self.cfg.mac {
            let low = u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]);
            let high = u32::from(u16::from_le_bytes([mac[4], mac[5]]));
            self.mac_write(MacCsr::AddrL, low)?;
            self.mac_write(MacCsr::AddrH, high)?;
        }
        let low = self.mac_read(MacCsr::AddrL)?.to_le_bytes();
        let high = self.mac_read(MacCsr::AddrH)?.to_le_bytes();
        self.mac = [low[0], low[1], low[2], low[3], high[0], high[1]];

        self.phy_write(PhyReg::Advertise, phy::ADV_ALL_10_100)?;
        self.phy_write(PhyReg::BasicControl, phy::BCR_ANENABLE | phy::BCR_ANRESTART)?;

        // Own address and broadcast (DHCP) only: not promiscuous, the reset default.
        self.mac_write(MacCsr::MacCr, mac_cr::TXEN | mac_cr::RXEN | mac_cr::FDPX)?;
        self.bus.write(Reg::TxCfg, tx_cfg::TX_ON | tx_cfg::TXSAO);
        self.bus.write(Reg::RxCfg, 0);
        Ok(())
    }

    /// The MAC address in use.
    pub fn mac_address(&self) -> [u8; 6] {
        self.mac
    }

    /// ID_REV as read after reset (chip id in the high half: `0x0118`).
    pub fn id_rev(&self) -> u32 {
        self.id_rev
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether the PHY reports a link.
    pub fn link_up(&mut self) -> Result<bool, Error> {
        Ok(self.phy_read(PhyReg::BasicStatus)? & phy::BSR_LINK != 0)
    }

    /// Frames waiting in the chip.
    pub fn rx_pending(&mut self) -> u32 {
        RxFifoInf(self.bus.read(Reg::RxFifoInf)).statuses()
    }

    /// Reads the next received frame into `buf` (without its FCS) and returns its length,
    /// or `None` when no frame is waiting.
    ///
    /// A frame that cannot be delivered is still read out whole and returned as an error
    /// ([`Error::RxFrame`], [`Error::BufferTooSmall`]); the next call reads the next frame.
    pub fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        let dropped = self.bus.read(Reg::RxDrop);
        self.stats.rx_chip_dropped = self.stats.rx_chip_dropped.wrapping_add(dropped);
        let inf = RxFifoInf(self.bus.read(Reg::RxFifoInf));
        let pending = inf.statuses();
        if pending == 0 {
            return Ok(None);
        }
        let status = RxStatus(self.bus.read(Reg::RxStatus));
        let len = status.length();
        // The chip writes a frame's status after its data: a status whose frame is not
        // all in the data FIFO (or has no length) means the FIFOs are out of step.
        if len == 0 || len.div_ceil(4) * 4 > inf.data_bytes() as usize {
            // The frame boundaries in the data FIFO are unknown: start both FIFOs afresh.
            self.bus.write(Reg::RxCfg, rx_cfg::RX_DUMP);
            self.stats.rx_dumped = self.stats.rx_dumped.wrapping_add(pending);
            return Err(Error::RxDesync(pending));
        }
        let payload = len.saturating_sub(FCS);
        let deliver = !status.error() && payload <= buf.len();
        // Whole words, FCS included: QEMU's RX fast-forward leaves the FIFO untouched,
        // so the only way past a frame is to read it.
        let words = len.div_ceil(4);
        for i in 0..words {
            let word = self.bus.read(Reg::RxData).to_le_bytes();
            if deliver {
                let at = i * 4;
                if at < payload {
                    let n = (payload - at).min(4);
                    buf[at..at + n].copy_from_slice(&word[..n]);
                }
            }
        }
        if status.error() {
            self.stats.rx_errors = self.stats.rx_errors.wrapping_add(1);
            return Err(Error::RxFrame(status.0));
        }
        if !deliver {
            self.stats.rx_too_large = self.stats.rx_too_large.wrapping_add(1);
            return Err(Error::BufferTooSmall(payload));
        }
        self.stats.rx_frames = self.stats.rx_frames.wrapping_add(1);
        Ok(Some(payload))
    }

    /// Whether the TX FIFO has room for a frame of `len` bytes now.
    pub fn tx_ready(&mut self, len: usize) -> bool {
        TxFifoInf(self.bus.read(Reg::TxFifoInf)).free_bytes() as usize >= tx_fifo_bytes(len)
    }

    /// Queues `frame` (header and payload, no FCS: the chip appends it) for sending,
    /// waiting (bounded) for FIFO room.
    pub fn transmit(&mut self, frame: &[u8]) -> Result<(), Error> {
        let len = frame.len();
        if !(MIN_FRAME..=MAX_FRAME).contains(&len) {
            return Err(Error::FrameLength(len));
        }
        self.reap_tx_status();
        self.wait(Wait::TxSpace, |bus| {
            TxFifoInf(bus.read(Reg::TxFifoInf)).free_bytes() as usize >= tx_fifo_bytes(len)
        })?;
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1).max(1);
        self.bus.write(Reg::TxData, tx_cmd::a(len));
        self.bus.write(Reg::TxData, tx_cmd::b(tag, len));
        for chunk in frame.chunks(4) {
            let mut word = [0u8; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            self.bus.write(Reg::TxData, u32::from_le_bytes(word));
        }
        self.stats.tx_frames = self.stats.tx_frames.wrapping_add(1);
        Ok(())
    }

    /// Pops the TX statuses of frames sent so far and counts the failed ones.
    pub fn reap_tx_status(&mut self) {
        let n = TxFifoInf(self.bus.read(Reg::TxFifoInf)).statuses();
        for _ in 0..n {
            if TxStatus(self.bus.read(Reg::TxStatus)).error() {
                self.stats.tx_errors = self.stats.tx_errors.wrapping_add(1);
            }
        }
    }

    /// Gives the bus back (after stopping nothing: the chip keeps its configuration).
    pub fn release(self) -> B {
        self.bus
    }

    fn wait(&mut self, what: Wait, mut done: impl FnMut(&mut B) -> bool) -> Result<(), Error> {
        for _ in 0..self.cfg.spin_limit.max(1) {
            if done(&mut self.bus) {
                return Ok(());
            }
        }
        Err(Error::Timeout(what))
    }

    fn mac_idle(&mut self) -> Result<(), Error> {
        self.wait(Wait::MacCsr, |bus| {
            bus.read(Reg::MacCsrCmd) & mac_csr_cmd::BUSY == 0
        })
    }

    fn mac_read(&mut self, csr: MacCsr) -> Result<u32, Error> {
        self.mac_idle()?;
        self.bus.write(
            Reg::MacCsrCmd,
            mac_csr_cmd::BUSY | mac_csr_cmd::READ | csr as u32,
        );
        self.mac_idle()?;
        Ok(self.bus.read(Reg::MacCsrData))
    }

    fn mac_write(&mut self, csr: MacCsr, value: u32) -> Result<(), Error> {
        self.mac_idle()?;
        self.bus.write(Reg::MacCsrData, value);
        self.bus
            .write(Reg::MacCsrCmd, mac_csr_cmd::BUSY | csr as u32);
        self.mac_idle()
    }

    fn mii_idle(&mut self) -> Result<(), Error> {
        for _ in 0..self.cfg.spin_limit.max(1) {
            if self.mac_read(MacCsr::MiiAcc)? & mii_acc::BUSY == 0 {
                return Ok(());
            }
        }
        Err(Error::Timeout(Wait::Mii))
    }

    fn phy_read(&mut self, reg: PhyReg) -> Result<u16, Error> {
        self.mii_idle()?;
        self.mac_write(MacCsr::MiiAcc, mii_cmd(reg) | mii_acc::BUSY)?;
        self.mii_idle()?;
        Ok(self.mac_read(MacCsr::MiiData)? as u16)
    }

    fn phy_write(&mut self, reg: PhyReg, value: u16) -> Result<(), Error> {
        self.mii_idle()?;
        self.mac_write(MacCsr::MiiData, u32::from(value))?;
        self.mac_write(
            MacCsr::MiiAcc,
            mii_cmd(reg) | mii_acc::WRITE | mii_acc::BUSY,
        )?;
        self.mii_idle()
    }
}

fn mii_cmd(reg: PhyReg) -> u32 {
    (PHY_ADDR << mii_acc::PHY_SHIFT) | ((reg as u32) << mii_acc::REG_SHIFT)
}

/// TX FIFO bytes a frame takes: commands A and B plus its words.
fn tx_fifo_bytes(len: usize) -> usize {
    8 + len.div_ceil(4) * 4
}

#[cfg(test)]
mod tests {
    // `drop(nic)` ends the driver's borrow of the model before the test inspects it.
    #![allow(clippy::drop_non_drop)]

    use std::vec::Vec;

    use super::*;
    use crate::model::Model;

    fn up(model: &mut Model) -> Lan9118<&mut Model> {
        Lan9118::new(model, Config::default()).unwrap()
    }

    fn frame(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
    }

    #[test]
    fn bring_up_enables_rx_tx_without_promiscuous_mode() {
        let mut model = Model::new();
        let nic = up(&mut model);
        assert_eq!(nic.mac_address(), Model::EEPROM_MAC);
        assert_eq!(nic.id_rev() >> 16, 0x0118);
        drop(nic);
        assert!(model.resets >= 1);
        let cr = model.mac_cr;
        assert_ne!(cr & mac_cr::RXEN, 0);
        assert_ne!(cr & mac_cr::TXEN, 0);
        assert_eq!(cr & mac_cr::PRMS, 0, "filtering on our address");
        assert_ne!(model.tx_cfg & tx_cfg::TX_ON, 0);
        assert_eq!(model.int_en, 0, "polling: no interrupt sources");
    }

    #[test]
    fn programs_a_configured_mac_address() {
        let mut model = Model::new();
        let mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
        let nic = Lan9118::new(
            &mut model,
            Config {
                mac: Some(mac),
                ..Config::default()
            },
        )
        .unwrap();
        assert_eq!(nic.mac_address(), mac);
        drop(nic);
        assert_eq!(model.mac, mac);
    }

    #[test]
    fn absent_chip_is_reported() {
        let mut model = Model::new();
        model.byte_test = 0x4321_8765;
        assert_eq!(
            Lan9118::new(&mut model, Config::default()).unwrap_err(),
            Error::NotPresent(0x4321_8765)
        );
    }

    #[test]
    fn a_reset_that_never_completes_times_out() {
        let mut model = Model::new();
        model.stuck_in_reset = true;
        let err = Lan9118::new(
            &mut model,
            Config {
                spin_limit: 50,
                ..Config::default()
            },
        )
        .unwrap_err();
        assert_eq!(err, Error::Timeout(Wait::Reset));
    }

    #[test]
    fn frames_of_every_alignment_come_out_exactly() {
        let mut model = Model::new();
        let mut nic = up(&mut model);
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(nic.receive(&mut buf).unwrap(), None);
        drop(nic);
        let sent: Vec<Vec<u8>> = (60..68)
            .chain([1514, 342, 590])
            .map(|len| frame(len, len as u8))
            .collect();
        for f in &sent {
            model.inject(f);
        }
        let mut nic = up_keeping(&mut model);
        for f in &sent {
            let n = nic.receive(&mut buf).unwrap().expect("a frame waits");
            assert_eq!(&buf[..n], &f[..]);
        }
        assert_eq!(nic.receive(&mut buf).unwrap(), None);
        assert_eq!(nic.stats().rx_frames, sent.len() as u32);
    }

    /// The driver over a model that already holds frames (no reset: it would dump them).
    fn up_keeping(model: &mut Model) -> Lan9118<&mut Model> {
        Lan9118 {
            bus: model,
            cfg: Config::default(),
            mac: Model::EEPROM_MAC,
            id_rev: 0,
            next_tag: 1,
            stats: Stats::default(),
        }
    }

    #[test]
    fn bad_and_oversized_frames_are_drained_counted_and_do_not_desync() {
        let mut model = Model::new();
        let good1 = frame(99, 1);
        let bad = frame(200, 2);
        let big = frame(700, 3);
        let good2 = frame(61, 4);
        model.inject(&good1);
        model.inject_with_error(&bad);
        model.inject(&big);
        model.inject(&good2);
        let mut nic = up_keeping(&mut model);
        let mut buf = [0u8; 512];
        assert_eq!(nic.receive(&mut buf).unwrap(), Some(99));
        assert_eq!(&buf[..99], &good1[..]);
        assert!(matches!(nic.receive(&mut buf), Err(Error::RxFrame(_))));
        assert_eq!(nic.receive(&mut buf), Err(Error::BufferTooSmall(700)));
        assert_eq!(nic.receive(&mut buf).unwrap(), Some(61));
        assert_eq!(&buf[..61], &good2[..]);
        let s = nic.stats();
        assert_eq!((s.rx_frames, s.rx_errors, s.rx_too_large), (2, 1, 1));
        drop(nic);
        assert_eq!(model.rx_words_left(), 0, "every word was read out");
    }

    #[test]
    fn an_impossible_status_dumps_and_counts_the_fifo() {
        let mut model = Model::new();
        model.inject(&frame(80, 1));
        model.inject(&frame(80, 2));
        model.corrupt_next_status();
        let mut nic = up_keeping(&mut model);
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(nic.receive(&mut buf), Err(Error::RxDesync(2)));
        assert_eq!(nic.stats().rx_dumped, 2);
        assert_eq!(nic.receive(&mut buf).unwrap(), None);
        model.inject(&frame(70, 3));
        let mut nic = up_keeping(&mut model);
        assert_eq!(nic.receive(&mut buf).unwrap(), Some(70));
    }

    #[test]
    fn a_status_longer_than_the_data_fifo_dumps_instead_of_underflowing() {
        let mut model = Model::new();
        model.inject(&frame(80, 1));
        model.stretch_next_status(1500);
        let mut nic = up_keeping(&mut model);
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(nic.receive(&mut buf), Err(Error::RxDesync(1)));
        drop(nic);
        assert_eq!(model.rx_words_left(), 0);
    }

    #[test]
    fn transmitted_frames_arrive_whole_with_fresh_tags() {
        let mut model = Model::new();
        let mut nic = up(&mut model);
        let frames: Vec<Vec<u8>> = [14, 15, 60, 61, 62, 63, 1514]
            .into_iter()
            .map(|len| frame(len, 9))
            .collect();
        for f in &frames {
            assert!(nic.tx_ready(f.len()));
            nic.transmit(f).unwrap();
        }
        assert_eq!(nic.stats().tx_frames, frames.len() as u32);
        drop(nic);
        assert_eq!(model.sent, frames);
        let tags: Vec<u16> = model.sent_tags.clone();
        assert_eq!(tags, (1..=frames.len() as u16).collect::<Vec<_>>());
    }

    #[test]
    fn transmit_rejects_bad_lengths_and_counts_failed_sends() {
        let mut model = Model::new();
        let mut nic = up(&mut model);
        assert_eq!(nic.transmit(&[0; 13]), Err(Error::FrameLength(13)));
        assert_eq!(nic.transmit(&[0; 1515]), Err(Error::FrameLength(1515)));
        drop(nic);
        model.fail_tx = true;
        let mut nic = up_keeping(&mut model);
        nic.transmit(&frame(64, 0)).unwrap();
        nic.transmit(&frame(64, 0)).unwrap();
        nic.reap_tx_status();
        assert_eq!(nic.stats().tx_errors, 2);
    }

    #[test]
    fn a_tx_fifo_that_never_drains_times_out() {
        let mut model = Model::new();
        model.tx_free_bytes = Some(16);
        let mut nic = up_keeping(&mut model);
        nic.cfg.spin_limit = 20;
        assert!(!nic.tx_ready(64));
        assert_eq!(
            nic.transmit(&frame(64, 0)),
            Err(Error::Timeout(Wait::TxSpace))
        );
        assert_eq!(nic.stats().tx_frames, 0);
    }

    #[test]
    fn link_state_comes_from_the_phy() {
        let mut model = Model::new();
        let mut nic = up(&mut model);
        assert!(nic.link_up().unwrap());
        drop(nic);
        model.link = false;
        let mut nic = up_keeping(&mut model);
        assert!(!nic.link_up().unwrap());
    }
}
