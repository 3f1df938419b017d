//! The notAfter of an X.509 certificate, read from its DER bytes: just enough of a DER walker
//! to reach `tbsCertificate.validity.notAfter` (RFC 5280, section 4.1). Pure, bounded and
//! panic-free: anything malformed, or merely unexpected, is `None`.

use chrono::{DateTime, NaiveDate, Utc};

/// DER tags (universal class) met on the way to notAfter.
const INTEGER: u8 = 0x02;
const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT Version`: context-specific, constructed, tag 0.
const VERSION: u8 = 0xa0;

/// The notAfter of the certificate `der`, or `None` if `der` is not a well-formed certificate
/// as far as the walk goes:
///
/// ```text
/// Certificate ::= SEQUENCE {
///     tbsCertificate       SEQUENCE {
///         version          [0] EXPLICIT INTEGER OPTIONAL,
///         serialNumber     INTEGER,
///         signature        AlgorithmIdentifier (SEQUENCE),
///         issuer           Name (SEQUENCE),
///         validity         SEQUENCE { notBefore Time, notAfter Time },
///         ... },
///     ... }
/// Time ::= CHOICE { utcTime UTCTime, generalTime GeneralizedTime }
/// ```
pub(super) fn not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    let (certificate, rest) = element(der, SEQUENCE)?;
    if !rest.is_empty() {
        return None; // trailing bytes: not one DER certificate
    }
    let (tbs, _signature_algorithm_and_value) = element(certificate, SEQUENCE)?;
    let tbs = match tlv(tbs)? {
        (VERSION, _, rest) => rest,
        _ => tbs, // v1: no version field
    };
    let (_serial, tbs) = element(tbs, INTEGER)?;
    let (_signature, tbs) = element(tbs, SEQUENCE)?;
    let (_issuer, tbs) = element(tbs, SEQUENCE)?;
    let (validity, _subject_and_the_rest) = element(tbs, SEQUENCE)?;
    let (_not_before_tag, _not_before, validity) = tlv(validity)?;
    let (tag, not_after, _) = tlv(validity)?;
    time(tag, not_after)
}

/// The next element of `input` if its tag is `tag`: its contents, and what follows it.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match tlv(input)? {
        (t, contents, rest) if t == tag => Some((contents, rest)),
        _ => None,
    }
}

/// Splits the first DER element off `input`: `(tag, contents, rest)`. Only single-byte tags
/// (all that a certificate uses up to notAfter) and definite lengths of at most 4 length
/// bytes; the contents must fit in `input`.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // a multi-byte (high-number) tag
    }
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first) // short form
    } else {
        // Long form: the low bits count the length bytes that follow (0 is BER's indefinite
        // length, which DER forbids). Four bytes already allow 4 GiB: more is malformed.
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || input.len() < count {
            return None;
        }
        let (bytes, rest) = input.split_at(count);
        input = rest;
        bytes
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b))
    };
    if len > input.len() {
        return None;
    }
    let (contents, rest) = input.split_at(len);
    Some((tag, contents, rest))
}

/// A `Time` as RFC 5280 (section 4.1.2.5) has certificates encode it: UTCTime
/// `YYMMDDHHMMSSZ`, whose YY below 50 is 20YY and otherwise 19YY, or GeneralizedTime
/// `YYYYMMDDHHMMSSZ`; always UTC, always with seconds, never fractions.
fn time(tag: u8, text: &[u8]) -> Option<DateTime<Utc>> {
    let (year, rest) = match (tag, text.len()) {
        (UTC_TIME, 13) => {
            let yy = digits(&text[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        (GENERALIZED_TIME, 15) => (digits(&text[..4])?, &text[4..]),
        _ => return None,
    };
    // rest: MMDDHHMMSSZ
    if rest[10] != b'Z' {
        return None;
    }
    let field = |i: usize| digits(&rest[i..i + 2]);
    let date = NaiveDate::from_ymd_opt(year as i32, field(0)?, field(2)?)?;
    let at = date.and_hms_opt(field(4)?, field(6)?, field(8)?)?;
    Some(at.and_utc())
}

/// The value of a run of ASCII decimal digits (at most 4 here, so no overflow).
fn digits(text: &[u8]) -> Option<u32> {
    text.iter().try_fold(0u32, |value, &b| {
        b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// A self-signed certificate valid until `year`-`month`-`day` 00:00:00 UTC. rcgen, like
    /// RFC 5280 asks, writes years before 2050 as UTCTime and later ones as GeneralizedTime.
    fn certificate_until(year: i32, month: u8, day: u8) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(year, month, day);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn reads_a_utc_time_not_after() {
        let der = certificate_until(2030, 6, 15);
        assert!(der.windows(2).any(|w| w == [UTC_TIME, 13]));
        assert_eq!(not_after(&der), Some(utc(2030, 6, 15, 0, 0, 0)));
    }

    #[test]
    fn reads_a_generalized_time_not_after() {
        let der = certificate_until(2060, 2, 29);
        assert!(der.windows(2).any(|w| w == [GENERALIZED_TIME, 15]));
        assert_eq!(not_after(&der), Some(utc(2060, 2, 29, 0, 0, 0)));
    }

    #[test]
    fn garbage_and_truncations_are_none() {
        let der = certificate_until(2030, 6, 15);
        for len in 0..der.len() {
            assert_eq!(not_after(&der[..len]), None, "truncated to {len} bytes");
        }
        let mut trailing = der.clone();
        trailing.push(0);
        assert_eq!(not_after(&trailing), None);
        for garbage in [
            &b""[..],
            b"\x30",
            b"\x30\x80\x00\x00",                 // indefinite length
            b"\x30\x85\x01\x00\x00\x00\x00\x00", // five length bytes
            b"\x30\x84\xff\xff\xff\xff",         // longer than the input
            b"\x3f\x01\x00",                     // multi-byte tag
            b"-----BEGIN CERTIFICATE-----",
        ] {
            assert_eq!(not_after(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(
            time(UTC_TIME, b"491231235959Z"),
            Some(utc(2049, 12, 31, 23, 59, 59))
        );
        assert_eq!(
            time(UTC_TIME, b"500101000000Z"),
            Some(utc(1950, 1, 1, 0, 0, 0))
        );
        assert_eq!(
            time(GENERALIZED_TIME, b"99991231235959Z"),
            Some(utc(9999, 12, 31, 23, 59, 59))
        );
        for (tag, bad) in [
            (UTC_TIME, &b"300615000000"[..]),         // no Z
            (UTC_TIME, b"3006150000Z"),               // no seconds
            (UTC_TIME, b"300615000000+0100"),         // an offset
            (UTC_TIME, b"301315000000Z"),             // month 13
            (UTC_TIME, b"300230000000Z"),             // 30 February
            (UTC_TIME, b"300615240000Z"),             // hour 24
            (UTC_TIME, b"3006150000-0Z"),             // not a digit
            (GENERALIZED_TIME, b"20300615000000.5Z"), // a fraction
            (GENERALIZED_TIME, b"300615000000Z"),     // UTCTime text
            (UTC_TIME, b"20300615000000Z"),           // GeneralizedTime text
            (INTEGER, b"300615000000Z"),              // not a time at all
        ] {
            assert_eq!(time(tag, bad), None, "{bad:?}");
        }
    }
}
