//! Sensirion SCD41 CO2 sensor on I2C, through the `scd4x` crate.
//!
//! The sensor runs in periodic mode and produces a measurement every 5 s; the first one
//! comes about 5 s after the start command. Until then the driver reports
//! [`SensorStatus::WarmingUp`]; afterwards it polls "data ready" so it never reads the
//! same measurement twice, and reports a fault when no measurement came for well over a
//! period. The crate checks every word's CRC.
//!
//! Temperature and humidity from the SCD41 are skewed by the board's self-heating; they
//! are reported only when asked for (an air-quality node normally has a BME280 for them).

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use scd4x::Scd4x;

use super::{Fault, Readings, Sensor, SensorStatus, metric};

/// Settings of the SCD41 driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scd41Config {
    /// Sampling interval. Default 5 000 ms, the sensor's own period in periodic mode.
    pub interval_ms: u32,
    /// Time from the start command to the first measurement. Default 5 500 ms (data sheet:
    /// 5 s, plus margin for the sensor's clock).
    pub first_reading_ms: u32,
    /// With no measurement for this long the sensor is reported as faulty. Default
    /// 15 000 ms: three periods.
    pub stale_after_ms: u32,
    /// Also report the SCD41's temperature and humidity. Default false (self-heating).
    pub temperature_humidity: bool,
}

impl Default for Scd41Config {
    fn default() -> Self {
        Self {
            interval_ms: 5_000,
            first_reading_ms: 5_500,
            stale_after_ms: 15_000,
            temperature_humidity: false,
        }
    }
}

/// SCD41 driver.
pub struct Scd41<I2C, D> {
    dev: Scd4x<I2C, D>,
    cfg: Scd41Config,
    started_at_ms: Option<u64>,
    last_data_ms: Option<u64>,
    last_error: Option<Fault>,
}

impl<I2C, D> core::fmt::Debug for Scd41<I2C, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Scd41")
            .field("cfg", &self.cfg)
            .field("started_at_ms", &self.started_at_ms)
            .field("last_data_ms", &self.last_data_ms)
            .finish_non_exhaustive()
    }
}

fn fault_of<E>(e: &scd4x::Error<E>) -> Fault {
    match e {
        scd4x::Error::I2c(_) => Fault::Bus,
        scd4x::Error::Crc => Fault::Checksum,
        scd4x::Error::SelfTest => Fault::WrongDevice,
        scd4x::Error::NotAllowed | scd4x::Error::Internal => Fault::Init,
    }
}

impl<I2C: I2c, D: DelayNs> Scd41<I2C, D> {
    /// A driver; periodic measurement starts on the first sample (and again after a fault).
    pub fn new(i2c: I2C, delay: D, cfg: Scd41Config) -> Self {
        Self {
            dev: Scd4x::new(i2c, delay),
            cfg,
            started_at_ms: None,
            last_data_ms: None,
            last_error: None,
        }
    }

    /// Starts periodic measurement at `now_ms`. A sensor left running by a previous boot
    /// refuses the start command, so it is stopped first (which takes 500 ms).
    pub fn start(&mut self, now_ms: u64) -> Result<(), Fault> {
        self.started_at_ms = None;
        // Fails harmlessly when the sensor is idle; the crate then waits 500 ms.
        let _ = self.dev.stop_periodic_measurement();
        self.dev
            .start_periodic_measurement()
            .map_err(|e| fault_of(&e))?;
        self.started_at_ms = Some(now_ms);
        self.last_data_ms = None;
        Ok(())
    }

    /// Gives the bus back.
    pub fn release(self) -> I2C {
        self.dev.destroy()
    }

    fn read(&mut self, out: &mut Readings) -> Result<bool, Fault> {
        if !self.dev.data_ready_status().map_err(|e| fault_of(&e))? {
            return Ok(false);
        }
        let m = self.dev.measurement().map_err(|e| fault_of(&e))?;
        // 0 ppm is what the sensor returns when its measurement is not valid.
        if m.co2 == 0 {
            return Err(Fault::InvalidData);
        }
        out.push(metric!("co2"), f64::from(m.co2));
        if self.cfg.temperature_humidity {
            out.push(metric!("temperature"), f64::from(m.temperature));
            out.push(metric!("relativeHumidity"), f64::from(m.humidity));
        }
        Ok(true)
    }
}

impl<I2C: I2c, D: DelayNs> Sensor for Scd41<I2C, D> {
    fn interval_ms(&self) -> u32 {
        self.cfg.interval_ms
    }

    fn sample(&mut self, now_ms: u64, out: &mut Readings) -> SensorStatus {
        let started = match self.started_at_ms {
            Some(t) => t,
            None => match self.start(now_ms) {
                Ok(()) => now_ms,
                Err(f) => return SensorStatus::Fault(f),
            },
        };
        match self.read(out) {
            Ok(true) => {
                self.last_data_ms = Some(now_ms);
                self.last_error = None;
                return SensorStatus::Ok;
            }
            Ok(false) => {}
            Err(f) => {
                out.clear();
                self.last_error = Some(f);
                return SensorStatus::Fault(f);
            }
        }
        let Some(last) = self.last_data_ms else {
            let up_for = now_ms.saturating_sub(started);
            let first = u64::from(self.cfg.first_reading_ms);
            if up_for < first {
                return SensorStatus::WarmingUp {
                    remaining_ms: (first - up_for) as u32,
                };
            }
            return self.silent_for(up_for - first);
        };
        self.silent_for(now_ms.saturating_sub(last))
    }
}

impl<I2C: I2c, D: DelayNs> Scd41<I2C, D> {
    fn silent_for(&mut self, silent_ms: u64) -> SensorStatus {
        if silent_ms < u64::from(self.cfg.stale_after_ms) {
            return SensorStatus::NoNewData;
        }
        // Silent too long: restart periodic measurement on the next sample.
        self.started_at_ms = None;
        SensorStatus::Fault(self.last_error.unwrap_or(Fault::NoData))
    }
}
