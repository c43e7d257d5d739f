//! Capture sources: frames from capture files (pcap with micro- or nanosecond
//! timestamps, pcapng) through libpcap, fed one by one to an engine worker.
//!
//! libpcap is asked for nanosecond precision, so every file's timestamps reach the
//! pipeline in the same unit whatever the file stores. The frame is borrowed from
//! libpcap's buffer and never copied.

use std::path::Path;

use pcap::{Capture, Precision};

use crate::decode::LinkType;
use crate::engine::Worker;

/// A capture file that could not be read (whole or in part).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// libpcap could not open the file.
    #[error("{file}: cannot open capture: {message}")]
    Open {
        /// The file.
        file: String,
        /// libpcap's message.
        message: String,
    },
    /// The file's link type is not one the decoder knows.
    #[error("{file}: link type {dlt} is not supported (Ethernet, Linux cooked v1/v2, raw IP, BSD loopback are)")]
    LinkType {
        /// The file.
        file: String,
        /// The `LINKTYPE_` number.
        dlt: i32,
    },
    /// Reading stopped partway, for example at a truncated last record.
    #[error("{file}: read error after {frames} frames: {message}")]
    Read {
        /// The file.
        file: String,
        /// Frames read before the error.
        frames: u64,
        /// libpcap's message.
        message: String,
    },
}

/// Reads every frame of a capture file into `worker`. Returns the number of frames read.
pub fn replay_file(path: &Path, worker: &mut Worker<'_>) -> Result<u64, CaptureError> {
    let file = path.display().to_string();
    let mut capture = Capture::from_file_with_precision(path, Precision::Nano)
        .map_err(|e| CaptureError::Open { file: file.clone(), message: e.to_string() })?;
    let dlt = capture.get_datalink().0;
    let link = LinkType::from_dlt(dlt).ok_or(CaptureError::LinkType { file: file.clone(), dlt })?;
    let mut frames = 0u64;
    loop {
        match capture.next_packet() {
            Ok(packet) => {
                let h = packet.header;
                let time_ns = i64::from(h.ts.tv_sec) * 1_000_000_000 + i64::from(h.ts.tv_usec);
                worker.process(link, packet.data, h.len, time_ns);
                frames += 1;
            }
            Err(pcap::Error::NoMorePackets) => return Ok(frames),
            Err(e) => {
                return Err(CaptureError::Read { file, frames, message: e.to_string() });
            }
        }
    }
}
