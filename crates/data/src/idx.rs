//! The IDX file format (<http://yann.lecun.com/exdb/mnist/>): a big-endian
//! header of magic number and dimension sizes, then unsigned bytes.

use std::io::Read;

/// Magic number of an IDX file of `u8` with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of `u8` with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// What is wrong with an IDX file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdxError {
    /// The file ends inside its header.
    #[error("file is {len} bytes, shorter than its {needed}-byte header")]
    TooShort {
        /// Bytes in the file.
        len: usize,
        /// Bytes its header needs.
        needed: usize,
    },
    /// The magic number is not the one for this kind of file.
    #[error("wrong magic number 0x{found:08x}, expected 0x{expected:08x} ({what})")]
    WrongMagic {
        /// Magic number in the file.
        found: u32,
        /// Magic number this kind of file needs.
        expected: u32,
        /// What the expected magic means, e.g. `images: u8, 3 dimensions`.
        what: &'static str,
    },
    /// Fewer data bytes follow the header than it promises.
    #[error("truncated: the header promises {expected} bytes of data but {found} follow")]
    Truncated {
        /// Bytes the header promises.
        expected: usize,
        /// Bytes there are.
        found: usize,
    },
    /// More data bytes follow the header than it promises.
    #[error("at least {found} bytes of data follow where the header promises {expected}")]
    TrailingData {
        /// Bytes the header promises.
        expected: usize,
        /// Bytes there are, at least (a file is read no further than one
        /// byte past its promise).
        found: usize,
    },
    /// Images are not 28×28.
    #[error("image size {rows}x{cols} is not 28x28")]
    WrongImageSize {
        /// Rows per image in the header.
        rows: usize,
        /// Columns per image in the header.
        cols: usize,
    },
    /// A label is not a digit 0–9.
    #[error("label {label} at index {index} is not a digit 0-9")]
    BadLabel {
        /// Position of the label in the file.
        index: usize,
        /// The value found (labels are 0-9).
        label: u8,
    },
    /// The data starts like gzip but does not decompress; holds the
    /// decoder's message.
    #[error("not a valid gzip stream: {0}")]
    Gzip(String),
}

/// Images from an IDX3 file, row-major `u8` pixels, `count * rows * cols` of them.
#[derive(Debug, Clone)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Image height in pixels (28 once parsed).
    pub rows: usize,
    /// Image width in pixels (28 once parsed).
    pub cols: usize,
    /// Pixel values 0–255, row-major, image after image.
    pub pixels: Vec<u8>,
}

/// Labels from an IDX1 file.
#[derive(Debug, Clone)]
pub struct IdxLabels {
    /// One digit 0–9 per image.
    pub labels: Vec<u8>,
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn check_header(bytes: &[u8], dims: usize, magic: u32, what: &'static str) -> Result<(), IdxError> {
    let needed = 4 + 4 * dims;
    if bytes.len() < needed {
        return Err(IdxError::TooShort {
            len: bytes.len(),
            needed,
        });
    }
    let found = be_u32(bytes, 0);
    if found != magic {
        return Err(IdxError::WrongMagic {
            found,
            expected: magic,
            what,
        });
    }
    Ok(())
}

fn check_len(data: &[u8], expected: usize) -> Result<(), IdxError> {
    match data.len().cmp(&expected) {
        std::cmp::Ordering::Less => Err(IdxError::Truncated {
            expected,
            found: data.len(),
        }),
        std::cmp::Ordering::Greater => Err(IdxError::TrailingData {
            expected,
            found: data.len(),
        }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

impl IdxImages {
    /// Parses the decompressed bytes of an images file.
    pub fn parse(bytes: &[u8]) -> Result<Self, IdxError> {
        check_header(bytes, 3, IMAGES_MAGIC, "images: u8, 3 dimensions")?;
        let count = be_u32(bytes, 4) as usize;
        let rows = be_u32(bytes, 8) as usize;
        let cols = be_u32(bytes, 12) as usize;
        if rows != 28 || cols != 28 {
            return Err(IdxError::WrongImageSize { rows, cols });
        }
        let data = &bytes[16..];
        let expected = count.checked_mul(rows * cols).ok_or(IdxError::Truncated {
            expected: usize::MAX,
            found: data.len(),
        })?;
        check_len(data, expected)?;
        Ok(Self {
            count,
            rows,
            cols,
            pixels: data.to_vec(),
        })
    }

    /// Encodes images as an IDX3 file (used by tests and tools that write data sets).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.pixels.len());
        for v in [
            IMAGES_MAGIC,
            self.count as u32,
            self.rows as u32,
            self.cols as u32,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&self.pixels);
        out
    }
}

impl IdxLabels {
    /// Parses the decompressed bytes of a labels file.
    pub fn parse(bytes: &[u8]) -> Result<Self, IdxError> {
        check_header(bytes, 1, LABELS_MAGIC, "labels: u8, 1 dimension")?;
        let count = be_u32(bytes, 4) as usize;
        let data = &bytes[8..];
        check_len(data, count)?;
        if let Some((index, &label)) = data.iter().enumerate().find(|(_, &l)| l > 9) {
            return Err(IdxError::BadLabel { index, label });
        }
        Ok(Self {
            labels: data.to_vec(),
        })
    }

    /// Encodes labels as an IDX1 file.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.labels.len());
        out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
        out.extend_from_slice(&(self.labels.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.labels);
        out
    }
}

/// Reads an IDX file's decompressed bytes from `reader`, but never more
/// than its header promises plus one byte (enough to notice trailing data):
/// a gzip bomb (a small `.gz` of a valid header and gigabytes of zeros)
/// costs what the header promises, not what it inflates to. A header of
/// neither kind is returned as read so far, for [`IdxImages::parse`] or
/// [`IdxLabels::parse`] to explain.
pub fn read_promised(reader: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.by_ref().take(8).read_to_end(&mut out)?;
    if out.len() < 8 {
        return Ok(out);
    }
    let promised = match be_u32(&out, 0) {
        IMAGES_MAGIC => {
            reader.by_ref().take(8).read_to_end(&mut out)?;
            if out.len() < 16 {
                return Ok(out);
            }
            let dims = [4, 8, 12].map(|at| be_u32(&out, at) as u64);
            16 + dims.iter().product::<u64>()
        }
        LABELS_MAGIC => 8 + be_u32(&out, 4) as u64,
        _ => return Ok(out),
    };
    // Grown as the data comes: a header may promise more than there is.
    reader
        .take(promised + 1 - out.len() as u64)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// Gunzips `raw` when it starts with the gzip magic bytes.
pub fn gunzip_if_needed(raw: Vec<u8>) -> Result<Vec<u8>, IdxError> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| IdxError::Gzip(e.to_string()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(count: usize) -> IdxImages {
        IdxImages {
            count,
            rows: 28,
            cols: 28,
            pixels: (0..count * 784).map(|i| (i % 251) as u8).collect(),
        }
    }

    #[test]
    fn round_trips_images_and_labels() {
        let img = images(3);
        let back = IdxImages::parse(&img.encode()).unwrap();
        assert_eq!(back.count, 3);
        assert_eq!(back.pixels, img.pixels);
        let labels = IdxLabels {
            labels: vec![0, 9, 4],
        };
        assert_eq!(
            IdxLabels::parse(&labels.encode()).unwrap().labels,
            vec![0, 9, 4]
        );
    }

    #[test]
    fn rejects_wrong_magic() {
        let bytes = IdxLabels { labels: vec![1] }.encode();
        let err = IdxImages::parse(&[bytes.clone(), vec![0; 8]].concat()).unwrap_err();
        assert!(
            matches!(err, IdxError::WrongMagic { found: 0x801, .. }),
            "{err}"
        );
        let err = IdxLabels::parse(&images(1).encode()).unwrap_err();
        assert!(
            err.to_string().contains("wrong magic number 0x00000803"),
            "{err}"
        );
    }

    #[test]
    fn rejects_truncated_and_short_files() {
        let mut bytes = images(2).encode();
        bytes.truncate(bytes.len() - 10);
        assert_eq!(
            IdxImages::parse(&bytes).unwrap_err(),
            IdxError::Truncated {
                expected: 1568,
                found: 1558
            }
        );
        assert!(matches!(
            IdxImages::parse(&bytes[..10]).unwrap_err(),
            IdxError::TooShort {
                len: 10,
                needed: 16
            }
        ));
        let mut labels = IdxLabels { labels: vec![1, 2] }.encode();
        labels.push(3);
        assert!(matches!(
            IdxLabels::parse(&labels).unwrap_err(),
            IdxError::TrailingData { .. }
        ));
    }

    #[test]
    fn rejects_non_digit_labels_and_odd_sizes() {
        let labels = IdxLabels {
            labels: vec![1, 12],
        }
        .encode();
        assert_eq!(
            IdxLabels::parse(&labels).unwrap_err(),
            IdxError::BadLabel {
                index: 1,
                label: 12
            }
        );
        let mut img = images(1);
        img.rows = 14;
        img.cols = 56;
        assert!(matches!(
            IdxImages::parse(&img.encode()).unwrap_err(),
            IdxError::WrongImageSize { rows: 14, cols: 56 }
        ));
    }

    #[test]
    fn reading_stops_one_byte_past_the_header_s_promise() {
        // An endless stream of zeros after a header for 3 images.
        let head = &images(3).encode()[..16];
        let mut endless = head.chain(std::io::repeat(0));
        let bytes = read_promised(&mut endless).unwrap();
        assert_eq!(bytes.len(), 16 + 3 * 784 + 1);
        let err = IdxImages::parse(&bytes).unwrap_err();
        assert_eq!(
            err,
            IdxError::TrailingData {
                expected: 3 * 784,
                found: 3 * 784 + 1
            }
        );
        let labels = IdxLabels { labels: vec![1, 2] }.encode();
        let mut endless = labels.as_slice().chain(std::io::repeat(7));
        assert_eq!(read_promised(&mut endless).unwrap().len(), 8 + 2 + 1);
        // A whole file reads whole; a short or foreign one as it is.
        let whole = images(2).encode();
        assert_eq!(read_promised(&mut whole.as_slice()).unwrap(), whole);
        assert_eq!(read_promised(&mut &b"\0\0\x08\x03ab"[..]).unwrap().len(), 6);
        assert_eq!(
            read_promised(&mut &b"PK\x03\x04 not idx at all"[..])
                .unwrap()
                .len(),
            8
        );
    }

    #[test]
    fn gunzips_only_gzip_data() {
        use std::io::Write;
        let raw = images(1).encode();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        assert_eq!(gunzip_if_needed(gz.finish().unwrap()).unwrap(), raw);
        assert_eq!(gunzip_if_needed(raw.clone()).unwrap(), raw);
        assert!(matches!(
            gunzip_if_needed(vec![0x1f, 0x8b, 0, 1, 2]).unwrap_err(),
            IdxError::Gzip(_)
        ));
    }
}

/// Fuzzing: whatever the bytes, the parsers answer (never panic, never
/// allocate beyond the input), and what they write they read back.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Bytes that start like an IDX header often enough to get past it.
    fn idx_like() -> impl Strategy<Value = Vec<u8>> {
        let header = prop_oneof![
            Just(IMAGES_MAGIC.to_be_bytes().to_vec()),
            Just(LABELS_MAGIC.to_be_bytes().to_vec()),
            proptest::collection::vec(any::<u8>(), 4),
        ];
        (header, proptest::collection::vec(any::<u8>(), 0..4096)).prop_map(|(mut h, tail)| {
            h.extend(tail);
            h
        })
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in idx_like()) {
            let _ = IdxImages::parse(&bytes);
            let _ = IdxLabels::parse(&bytes);
            let _ = gunzip_if_needed(bytes);
        }

        #[test]
        fn what_is_written_reads_back(count in 0usize..8, seed in any::<u64>()) {
            let pixels: Vec<u8> = (0..count * 784).map(|i| (seed.wrapping_mul(i as u64 + 1) >> 7) as u8).collect();
            let labels: Vec<u8> = (0..count).map(|i| ((seed >> (i % 60)) % 10) as u8).collect();
            let images = IdxImages { count, rows: 28, cols: 28, pixels };
            prop_assert_eq!(IdxImages::parse(&images.encode()).unwrap().pixels, images.pixels);
            let l = IdxLabels { labels };
            prop_assert_eq!(IdxLabels::parse(&l.encode()).unwrap().labels, l.labels);
        }
    }
}
