//! Bosch BME280 (temperature, humidity, pressure) on I2C, through the `bme280` crate.
//!
//! The crate (0.5, embedded-hal 1.0, `no_std`) does the register work and the Bosch
//! compensation formulas; this module adds what the node needs around it: lazy
//! (re)initialisation after a fault, Bosch's "weather monitoring" settings (forced mode,
//! 1x oversampling, filter off: one conversion per sample, no IIR lag between samples
//! that are seconds apart), unit conversion to the catalog (hPa), and plausibility checks.
//!
//! Two kinds of garbage are caught before they become readings:
//! - A chip that browned out and reset comes back with oversampling "skipped"; the crate
//!   keeps triggering conversions, and the chip answers the skipped-measurement marker
//!   (`0x80000`, humidity `0x8000`), which compensates into plausible-looking numbers. The
//!   crate does not expose raw data, so the driver watches the data-register read on the
//!   bus (`Snoop`) and reports the marker as a fault, then re-initialises the chip.
//! - The crate clamps compensated values to the sensor's range (-40..85 Cel,
//!   300..1100 hPa); a value sitting on a clamp bound is reported as a fault too.

use bme280::i2c::BME280;
use bme280::{Configuration, IIRFilter, Oversampling};
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{I2c, Operation, SevenBitAddress};

use super::{Fault, Readings, Sensor, SensorStatus, metric};

/// Primary I2C address (SDO low).
pub const ADDRESS_PRIMARY: u8 = 0x76;
/// Secondary I2C address (SDO high).
pub const ADDRESS_SECONDARY: u8 = 0x77;

/// Settings of the BME280 driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bme280Config {
    /// I2C address. Default [`ADDRESS_PRIMARY`] (0x76), the usual breakout wiring.
    pub address: u8,
    /// Sampling interval. Default 10 000 ms: air temperature and pressure change slowly.
    pub interval_ms: u32,
    /// Report relative humidity. Default true; false for a BMP280 (no humidity sensor),
    /// which the crate would otherwise report as a constant 0 %RH.
    pub humidity: bool,
}

impl Default for Bme280Config {
    fn default() -> Self {
        Self {
            address: ADDRESS_PRIMARY,
            interval_ms: 10_000,
            humidity: true,
        }
    }
}

/// First data register (press_msb); a burst read of 8 bytes from here is one measurement.
const DATA_REGISTER: u8 = 0xF7;
/// What a skipped temperature or pressure conversion reads as (20-bit value).
const SKIPPED_20: u32 = 0x80000;
/// What a skipped humidity conversion reads as.
const SKIPPED_16: u32 = 0x8000;

/// The I2C bus as the crate sees it: it fails a measurement read that carries the
/// skipped-measurement marker, since the crate neither exposes raw data nor gives the bus
/// back.
#[derive(Debug)]
struct Snoop<I2C> {
    bus: I2C,
    humidity: bool,
}

/// Error of a [`Snoop`]ed bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SnoopError<E> {
    /// The bus failed.
    Bus(E),
    /// The chip answered with the skipped-measurement marker (it lost its configuration).
    Skipped,
}

impl<E: embedded_hal::i2c::Error> embedded_hal::i2c::Error for SnoopError<E> {
    fn kind(&self) -> embedded_hal::i2c::ErrorKind {
        match self {
            SnoopError::Bus(e) => e.kind(),
            SnoopError::Skipped => embedded_hal::i2c::ErrorKind::Other,
        }
    }
}

impl<I2C: I2c> embedded_hal::i2c::ErrorType for Snoop<I2C> {
    type Error = SnoopError<I2C::Error>;
}

// Each method is forwarded as is (not through `transaction`) so that the bus sees exactly
// the operations the crate asked for.
impl<I2C: I2c> I2c for Snoop<I2C> {
    fn transaction(
        &mut self,
        address: SevenBitAddress,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        self.bus
            .transaction(address, operations)
            .map_err(SnoopError::Bus)
    }
    fn read(&mut self, address: u8, read: &mut [u8]) -> Result<(), Self::Error> {
        self.bus.read(address, read).map_err(SnoopError::Bus)
    }
    fn write(&mut self, address: u8, write: &[u8]) -> Result<(), Self::Error> {
        self.bus.write(address, write).map_err(SnoopError::Bus)
    }
    fn write_read(
        &mut self,
        address: u8,
        write: &[u8],
        read: &mut [u8],
    ) -> Result<(), Self::Error> {
        self.bus
            .write_read(address, write, read)
            .map_err(SnoopError::Bus)?;
        if write == [DATA_REGISTER]
            && let Ok(raw) = <&[u8; 8]>::try_from(&*read)
            && skipped(raw, self.humidity)
        {
            return Err(SnoopError::Skipped);
        }
        Ok(())
    }
}

/// True when a burst read carries the skipped-measurement marker.
fn skipped(raw: &[u8; 8], humidity: bool) -> bool {
    let p = (u32::from(raw[0]) << 12) | (u32::from(raw[1]) << 4) | (u32::from(raw[2]) >> 4);
    let t = (u32::from(raw[3]) << 12) | (u32::from(raw[4]) << 4) | (u32::from(raw[5]) >> 4);
    let h = (u32::from(raw[6]) << 8) | u32::from(raw[7]);
    p == SKIPPED_20 || t == SKIPPED_20 || (humidity && h == SKIPPED_16)
}

/// BME280 driver: owns the bus (or a shared-bus device handle) and a delay.
pub struct Bme280<I2C, D> {
    dev: BME280<Snoop<I2C>>,
    delay: D,
    cfg: Bme280Config,
    initialised: bool,
}

impl<I2C, D> core::fmt::Debug for Bme280<I2C, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bme280")
            .field("cfg", &self.cfg)
            .field("initialised", &self.initialised)
            .finish_non_exhaustive()
    }
}

fn fault_of<E>(e: &bme280::Error<SnoopError<E>>) -> Fault {
    match e {
        bme280::Error::Bus(SnoopError::Skipped) => Fault::InvalidData,
        bme280::Error::Bus(SnoopError::Bus(_)) => Fault::Bus,
        bme280::Error::UnsupportedChip => Fault::WrongDevice,
        bme280::Error::NoCalibrationData => Fault::Init,
        _ => Fault::InvalidData,
    }
}

impl<I2C: I2c, D: DelayNs> Bme280<I2C, D> {
    /// A driver; the chip is initialised on the first sample (and again after a fault).
    pub fn new(i2c: I2C, delay: D, cfg: Bme280Config) -> Self {
        Self {
            dev: BME280::new(
                Snoop {
                    bus: i2c,
                    humidity: cfg.humidity,
                },
                cfg.address,
            ),
            delay,
            cfg,
            initialised: false,
        }
    }

    /// Checks the chip id, resets the chip, reads its calibration and configures it.
    pub fn init(&mut self) -> Result<(), Fault> {
        let config = Configuration::default()
            .with_temperature_oversampling(Oversampling::Oversampling1X)
            .with_pressure_oversampling(Oversampling::Oversampling1X)
            .with_humidity_oversampling(Oversampling::Oversampling1X)
            .with_iir_filter(IIRFilter::Off);
        self.initialised = false;
        self.dev
            .init_with_config(&mut self.delay, config)
            .map_err(|e| fault_of(&e))?;
        self.initialised = true;
        Ok(())
    }
}

impl<I2C: I2c, D: DelayNs> Sensor for Bme280<I2C, D> {
    fn interval_ms(&self) -> u32 {
        self.cfg.interval_ms
    }

    fn sample(&mut self, _now_ms: u64, out: &mut Readings) -> SensorStatus {
        if !self.initialised
            && let Err(f) = self.init()
        {
            return SensorStatus::Fault(f);
        }
        let m = match self.dev.measure(&mut self.delay) {
            Ok(m) => m,
            Err(e) => {
                // A reset chip (brown-out) loses its configuration: configure it again next
                // time; a bus error may have been one too.
                self.initialised = false;
                return SensorStatus::Fault(fault_of(&e));
            }
        };
        let (t, p_hpa, h) = (m.temperature, m.pressure / 100.0, m.humidity);
        let on_clamp = t <= -40.0 || t >= 85.0 || p_hpa <= 300.0 || p_hpa >= 1100.0;
        if on_clamp || !(t.is_finite() && p_hpa.is_finite() && h.is_finite()) {
            return SensorStatus::Fault(Fault::InvalidData);
        }
        out.push(metric!("temperature"), f64::from(t));
        out.push(metric!("pressure"), f64::from(p_hpa));
        if self.cfg.humidity {
            out.push(metric!("relativeHumidity"), f64::from(h));
        }
        SensorStatus::Ok
    }
}
