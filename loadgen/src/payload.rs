//! Message contents: each message carries its connection id and sequence number, and the rest
//! is a per-connection pattern, so every echoed byte can be checked against what was sent.

/// The message a connection sends, rewritten in place for each sequence number.
#[derive(Debug, Clone)]
pub struct Payload {
    message: Vec<u8>,
}

impl Payload {
    /// A `len`-byte message for connection `conn_id` (`len` ≥ 16).
    pub fn new(conn_id: u64, len: usize) -> Self {
        assert!(len >= 16, "payload must hold the id and sequence number");
        let mut message = vec![0u8; len];
        message[..8].copy_from_slice(&conn_id.to_le_bytes());
        // xorshift64 from the id: cheap, and different for every connection.
        let mut x = conn_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for b in &mut message[16..] {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        Payload { message }
    }

    /// Sets the sequence number and returns the message to send.
    pub fn stamp(&mut self, seq: u64) -> &[u8] {
        self.message[8..16].copy_from_slice(&seq.to_le_bytes());
        &self.message
    }

    /// Counts the bytes of `echoed` that differ from the message last stamped (a length
    /// difference counts every missing or extra byte).
    pub fn mismatches(&self, echoed: &[u8]) -> u64 {
        let seq = u64::from_le_bytes(self.message[8..16].try_into().expect("8 bytes"));
        self.mismatches_at(seq, echoed)
    }

    /// Counts the bytes of `echoed` that differ from message `seq` (whatever was stamped
    /// last: with several messages in flight, the reader checks an older one). A length
    /// difference counts every missing or extra byte.
    pub fn mismatches_at(&self, seq: u64, echoed: &[u8]) -> u64 {
        let m = &self.message;
        let seq = seq.to_le_bytes();
        let len_diff = m.len().abs_diff(echoed.len());
        if len_diff == 0 && echoed[..8] == m[..8] && echoed[8..16] == seq && echoed[16..] == m[16..]
        {
            return 0;
        }
        let differing = m
            .iter()
            .enumerate()
            .zip(echoed)
            .filter(|((i, a), b)| {
                let want = if (8..16).contains(i) { &seq[i - 8] } else { a };
                want != *b
            })
            .count();
        (differing + len_diff) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_is_checked() {
        let mut p = Payload::new(7, 64);
        let sent = p.stamp(3).to_vec();
        assert_eq!(p.mismatches(&sent), 0);
        for i in 0..64 {
            let mut bad = sent.clone();
            bad[i] ^= 0x40;
            assert_eq!(p.mismatches(&bad), 1, "byte {i} not checked");
        }
        // A stale echo (previous sequence number) is caught too.
        let old = p.stamp(2).to_vec();
        p.stamp(3);
        assert!(p.mismatches(&old) > 0);
        assert_eq!(p.mismatches(&sent[..60]), 4);
    }

    #[test]
    fn older_messages_are_checked_by_their_own_number() {
        let mut p = Payload::new(9, 32);
        let first = p.stamp(5).to_vec();
        p.stamp(6);
        assert_eq!(p.mismatches_at(5, &first), 0);
        assert_eq!(p.mismatches_at(6, &first), 1);
        assert_eq!(p.mismatches_at(5, &first[..20]), 12);
    }

    #[test]
    fn connections_differ() {
        let a = Payload::new(1, 64).stamp(0).to_vec();
        let b = Payload::new(2, 64).stamp(0).to_vec();
        assert_ne!(a[16..], b[16..]);
    }
}
