//! Cortex-M4F air-quality image of the firmware core, without a network stack.
//!
//! It proves that the core (drivers, sampler, encoder, backlog, node) builds and links
//! for a bare Cortex-M with no allocator, and gives the core's flash and RAM figure
//! (`scripts/firmware-size.sh`). The board is QEMU's `mps2-an386` (25 MHz; CMSDK UART0
//! at 0x4000_4000, shield I2C on SBCon at 0x4002_9000): a BME280 on the I2C, a PMS5003
//! on the UART, a SysTick clock. Packs go into the backlog, where overflow drops the
//! oldest and counts it; issue 8 adds the LAN9118 Ethernet and the MQTT link.

#![no_std]
#![no_main]

mod clock;
mod i2c;
mod uart;

use cortex_m_rt::entry;
use firmware::{
    Node, NodeConfig,
    drivers::{
        bme280::{Bme280, Bme280Config},
        pms5003::{Pms5003, Pms5003Config},
    },
};
use panic_halt as _;
use schemas::topic::DeviceKind;

use crate::{
    clock::{BusyDelay, Monotonic},
    i2c::SbconI2c,
    uart::CmsdkUart,
};

/// Core clock of the MPS2 boards' FPGA images (an STM32F4 on its HSI: 16 MHz).
const CORE_HZ: u32 = 25_000_000;
/// CMSDK UART0 on the MPS2 boards.
const UART0: usize = 0x4000_4000;
/// SBCon I2C of the shield header on the MPS2 boards.
const SHIELD0_I2C: usize = 0x4002_9000;

/// Backlog: 16 packs of up to 256 bytes (4 KiB): a quarter-hour of readings at 60 s.
const SLOTS: usize = 16;
const SLOT_BYTES: usize = 256;

type AqSensors = (Bme280<SbconI2c, BusyDelay>, Pms5003<CmsdkUart>);
type AqNode = Node<AqSensors, SLOTS, SLOT_BYTES>;

const DEVICE_ID: &str = "aq-m4-0001";
const DISTRICT: &str = "ba-dinh";

#[entry]
fn main() -> ! {
    // Both are taken exactly once, here.
    let Some(core) = cortex_m::Peripherals::take() else {
        halt()
    };
    clock::start(core.SYST, CORE_HZ);
    let mut mono = Monotonic::default();
    let delay = BusyDelay {
        cycles_per_us: CORE_HZ / 1_000_000,
    };

    // SAFETY: the MPS2 memory map puts these blocks at these addresses, and nothing
    // else in this image touches them.
    let (uart, i2c) = unsafe {
        (
            CmsdkUart::new(UART0, CORE_HZ, 9_600),
            SbconI2c::new(SHIELD0_I2C, delay),
        )
    };
    let sensors = (
        Bme280::new(i2c, delay, Bme280Config::default()),
        Pms5003::new(uart, Pms5003Config::default(), mono.now_ms()),
    );
    let Ok(cfg) = NodeConfig::new(DEVICE_ID, DISTRICT, DeviceKind::AirQuality) else {
        halt()
    };
    // In a static, so that the size report's static RAM includes the backlog.
    let Some(node) = cortex_m::singleton!(: AqNode = Node::new(cfg.with_sensors(&["bme280", "pms5003"]), sensors))
    else {
        halt()
    };

    loop {
        let now = mono.now_ms();
        node.poll(now);
        // Sleep until the next tick; the node's next deadline is at least a tick away.
        while mono.now_ms() < node.next_deadline() {
            cortex_m::asm::wfi();
        }
    }
}

fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}
