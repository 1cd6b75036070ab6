//! The stream broker's ack commands, built without I/O ([`Call`]): what
//! [`StreamBroker`](super::StreamBroker) sends, what its unit tests read and what
//! `benches/settle.rs` measures.

use crate::call::Call;

use super::StreamEntryId;

/// The ack commands of one consumer group of a stream.
#[derive(Debug, Clone)]
pub struct StreamCommands {
    stream: String,
    group: String,
}

impl StreamCommands {
    /// The commands of group `group` of stream `stream`.
    pub fn new(stream: &str, group: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            group: group.to_owned(),
        }
    }

    /// `XACK <stream> <group> <id>…`: replies how many were still pending.
    pub fn ack(&self, ids: &[StreamEntryId]) -> Call {
        let mut xack = redis::cmd("XACK");
        xack.arg(&self.stream).arg(&self.group).arg(ids);
        Call::command(xack)
    }

    /// `XACK` then `XDEL` of the same ids in one transaction (a broker `with_delete_on_ack`):
    /// replies `[acked]`, the XDEL's reply left out.
    pub fn ack_and_delete(&self, ids: &[StreamEntryId]) -> Call {
        let mut pipe = redis::pipe();
        pipe.cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(ids)
            .cmd("XDEL")
            .arg(&self.stream)
            .arg(ids)
            .ignore();
        Call::transaction(pipe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_name_the_stream_group_and_ids() {
        let c = StreamCommands::new("jobs", "workers");
        let ids = [StreamEntryId::new(5, 0), StreamEntryId::new(5, 1)];
        let args: Vec<String> = c
            .ack(&ids)
            .args()
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert_eq!(args, ["XACK", "jobs", "workers", "5-0", "5-1"]);
        let packed = String::from_utf8(c.ack_and_delete(&ids).packed()).unwrap();
        assert!(packed.starts_with("*1\r\n$5\r\nMULTI\r\n"), "{packed}");
        assert!(
            packed.contains("XDEL\r\n$4\r\njobs\r\n$3\r\n5-0\r\n$3\r\n5-1"),
            "{packed}"
        );
        assert!(packed.ends_with("$4\r\nEXEC\r\n"), "{packed}");
    }
}
