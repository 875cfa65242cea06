//! A register-level stand-in for the chip, for the driver's host tests: FIFOs, MAC CSRs
//! and PHY as QEMU's model behaves (including its abort on MAC CSRs it does not model),
//! plus knobs for the faults a test wants (absent chip, stuck reset, bad frames, a TX
//! FIFO that never drains).

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::vec::Vec;

use crate::bus::RegisterBus;
use crate::regs::{BYTE_TEST_VALUE, Reg, hw_cfg, mac_cr, mac_csr_cmd, mii_acc, rx_cfg};

#[derive(Debug)]
pub struct Model {
    pub byte_test: u32,
    pub stuck_in_reset: bool,
    pub resets: u32,
    pub mac_cr: u32,
    pub tx_cfg: u32,
    pub int_en: u32,
    pub mac: [u8; 6],
    pub link: bool,
    pub fail_tx: bool,
    /// Fixed TDFREE (a FIFO that never drains); `None`: always empty, as in QEMU.
    pub tx_free_bytes: Option<u32>,
    pub sent: Vec<Vec<u8>>,
    pub sent_tags: Vec<u16>,
    hw_cfg: u32,
    mac_data: u32,
    mac_cmd: u32,
    mii_acc: u32,
    mii_data: u32,
    phy_bcr: u32,
    phy_adv: u32,
    rx_status: VecDeque<u32>,
    rx_data: VecDeque<u32>,
    tx_status: VecDeque<u32>,
    tx: TxState,
}

#[derive(Debug)]
enum TxState {
    Idle,
    CmdB {
        len: usize,
    },
    Data {
        len: usize,
        tag: u16,
        bytes: Vec<u8>,
    },
}

impl Model {
    /// What QEMU's EEPROM holds by default.
    pub const EEPROM_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    pub fn new() -> Self {
        Self {
            byte_test: BYTE_TEST_VALUE,
            stuck_in_reset: false,
            resets: 0,
            mac_cr: mac_cr::PRMS,
            tx_cfg: 0,
            int_en: 0,
            mac: Self::EEPROM_MAC,
            link: true,
            fail_tx: false,
            tx_free_bytes: None,
            sent: Vec::new(),
            sent_tags: Vec::new(),
            hw_cfg: 0x0005_0004,
            mac_data: 0,
            mac_cmd: 0,
            mii_acc: 0,
            mii_data: 0,
            phy_bcr: 0x3000,
            phy_adv: 0x01e1,
            rx_status: VecDeque::new(),
            rx_data: VecDeque::new(),
            tx_status: VecDeque::new(),
            tx: TxState::Idle,
        }
    }

    /// A frame arrives from the wire (the chip appends a 4-byte FCS).
    pub fn inject(&mut self, frame: &[u8]) {
        self.push_frame(frame, 0);
    }

    /// A frame the MAC flags as bad (error summary bit).
    pub fn inject_with_error(&mut self, frame: &[u8]) {
        self.push_frame(frame, 1 << 15);
    }

    /// The next RX status reads as zero length.
    pub fn corrupt_next_status(&mut self) {
        if let Some(s) = self.rx_status.front_mut() {
            *s &= 0xffff;
        }
    }

    /// The next RX status claims `len` bytes, more than its frame has.
    pub fn stretch_next_status(&mut self, len: u32) {
        if let Some(s) = self.rx_status.front_mut() {
            *s = (*s & 0xffff) | (len << 16);
        }
    }

    pub fn rx_words_left(&self) -> usize {
        self.rx_data.len()
    }

    fn push_frame(&mut self, frame: &[u8], flags: u32) {
        let mut bytes = frame.to_vec();
        bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        self.rx_status
            .push_back(((bytes.len() as u32) << 16) | flags);
        for chunk in bytes.chunks(4) {
            let mut w = [0u8; 4];
            w[..chunk.len()].copy_from_slice(chunk);
            self.rx_data.push_back(u32::from_le_bytes(w));
        }
    }

    fn reset(&mut self) {
        self.resets += 1;
        self.mac_cr = mac_cr::PRMS;
        self.tx_cfg = 0;
        self.int_en = 0;
        self.mac = Self::EEPROM_MAC;
        self.rx_status.clear();
        self.rx_data.clear();
        self.tx_status.clear();
        self.tx = TxState::Idle;
        self.hw_cfg = 0x0005_0004;
    }

    fn mac_csr_read(&mut self, index: u32) -> u32 {
        match index {
            1 => self.mac_cr,
            2 => u32::from(u16::from_le_bytes([self.mac[4], self.mac[5]])),
            3 => u32::from_le_bytes([self.mac[0], self.mac[1], self.mac[2], self.mac[3]]),
            6 => self.mii_acc,
            7 => self.mii_data,
            4 | 5 | 8 => 0,
            other => panic!("QEMU aborts: unimplemented MAC register read {other}"),
        }
    }

    fn mac_csr_write(&mut self, index: u32, value: u32) {
        match index {
            1 => self.mac_cr = value,
            2 => {
                let b = value.to_le_bytes();
                self.mac[4] = b[0];
                self.mac[5] = b[1];
            }
            3 => self.mac[..4].copy_from_slice(&value.to_le_bytes()),
            6 => {
                self.mii_acc = value & !mii_acc::BUSY;
                let reg = (value >> mii_acc::REG_SHIFT) & 0x1f;
                assert_eq!((value >> mii_acc::PHY_SHIFT) & 0x1f, 1, "internal PHY");
                if value & mii_acc::WRITE != 0 {
                    match reg {
                        0 => self.phy_bcr = self.mii_data,
                        4 => self.phy_adv = self.mii_data,
                        other => panic!("PHY write to unmodelled register {other}"),
                    }
                } else {
                    self.mii_data = match reg {
                        0 => self.phy_bcr,
                        1 => 0x7809 | if self.link { 0x0024 } else { 0 },
                        4 => self.phy_adv,
                        other => panic!("PHY read of unmodelled register {other}"),
                    };
                }
            }
            7 => self.mii_data = value & 0xffff,
            4 | 5 | 8 | 9 => {}
            other => panic!("QEMU aborts: unimplemented MAC register write {other}"),
        }
    }

    fn tx_push(&mut self, word: u32) {
        self.tx = match std::mem::replace(&mut self.tx, TxState::Idle) {
            TxState::Idle => {
                assert_ne!(word & (1 << 13), 0, "first segment");
                assert_ne!(word & (1 << 12), 0, "single-buffer frames");
                TxState::CmdB {
                    len: (word & 0x7ff) as usize,
                }
            }
            TxState::CmdB { len } => {
                assert_eq!((word & 0x7ff) as usize, len, "command B repeats the length");
                TxState::Data {
                    len,
                    tag: (word >> 16) as u16,
                    bytes: Vec::new(),
                }
            }
            TxState::Data {
                len,
                tag,
                mut bytes,
            } => {
                let take = (len - bytes.len()).min(4);
                bytes.extend_from_slice(&word.to_le_bytes()[..take]);
                if bytes.len() == len {
                    self.sent.push(bytes);
                    self.sent_tags.push(tag);
                    let err = if self.fail_tx { 1 << 15 } else { 0 };
                    self.tx_status.push_back((u32::from(tag) << 16) | err);
                    TxState::Idle
                } else {
                    TxState::Data { len, tag, bytes }
                }
            }
        };
    }
}

impl RegisterBus for Model {
    fn read(&mut self, reg: Reg) -> u32 {
        match reg {
            Reg::RxData => self.rx_data.pop_front().expect("RX data FIFO underflow"),
            Reg::RxStatus => self.rx_status.pop_front().unwrap_or(0),
            Reg::TxStatus => self.tx_status.pop_front().unwrap_or(0),
            Reg::IdRev => 0x0118_0001,
            Reg::ByteTest => self.byte_test,
            Reg::HwCfg => self.hw_cfg,
            Reg::PmtCtrl => u32::from(!self.stuck_in_reset),
            Reg::RxFifoInf => {
                ((self.rx_status.len() as u32) << 16) | (self.rx_data.len() as u32 * 4)
            }
            Reg::TxFifoInf => {
                ((self.tx_status.len() as u32) << 16) | self.tx_free_bytes.unwrap_or(4608)
            }
            Reg::RxDrop => 0,
            Reg::MacCsrCmd => self.mac_cmd,
            Reg::MacCsrData => self.mac_data,
            Reg::IntEn => self.int_en,
            Reg::TxCfg => self.tx_cfg,
            Reg::IrqCfg | Reg::IntSts | Reg::RxCfg => 0,
            Reg::TxData => panic!("TX data FIFO is write-only"),
        }
    }

    fn write(&mut self, reg: Reg, value: u32) {
        match reg {
            Reg::TxData => self.tx_push(value),
            Reg::HwCfg => {
                if value & hw_cfg::SRST != 0 {
                    if self.stuck_in_reset {
                        self.hw_cfg |= hw_cfg::SRST;
                    } else {
                        self.reset();
                    }
                } else {
                    self.hw_cfg = value;
                }
            }
            Reg::RxCfg => {
                if value & rx_cfg::RX_DUMP != 0 {
                    self.rx_status.clear();
                    self.rx_data.clear();
                }
            }
            Reg::TxCfg => self.tx_cfg = value,
            Reg::IntEn => self.int_en = value,
            Reg::IrqCfg | Reg::IntSts => {}
            Reg::MacCsrData => self.mac_data = value,
            Reg::MacCsrCmd => {
                // QEMU completes at once: BUSY reads back clear.
                self.mac_cmd = value & !mac_csr_cmd::BUSY;
                if value & mac_csr_cmd::BUSY != 0 {
                    let index = value & 0xf;
                    if value & mac_csr_cmd::READ != 0 {
                        self.mac_data = self.mac_csr_read(index);
                    } else {
                        self.mac_csr_write(index, self.mac_data);
                    }
                }
            }
            other => panic!("write to read-only register {other:?}"),
        }
    }
}
