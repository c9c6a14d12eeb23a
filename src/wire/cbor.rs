//! The one CBOR decode rule every wire format of ours shares: exactly one item of the expected shape, nothing after it.

use cbor4ii::core::dec::{Read, Reference};
use serde::Deserialize;

/// Why bytes are not one CBOR item of the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    #[error("malformed CBOR: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the CBOR item")]
    TrailingBytes(usize),
}

/// Decodes exactly one CBOR item of shape `T` from `bytes`: `Malformed` if it is not one, `TrailingBytes` if
/// anything follows it.
pub fn decode_cbor<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CborError> {
    let mut decoder = cbor4ii::serde::Deserializer::new(cbor4ii::core::utils::SliceReader::new(bytes));
    let value = T::deserialize(&mut decoder).map_err(|e| CborError::Malformed(e.to_string()))?;
    let trailing = match decoder.into_inner().fill(bytes.len()) {
        Ok(Reference::Long(rest)) | Ok(Reference::Short(rest)) => rest.len(),
        Err(never) => match never {},
    };
    if trailing > 0 {
        return Err(CborError::TrailingBytes(trailing));
    }
    Ok(value)
}
