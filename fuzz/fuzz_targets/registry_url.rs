//! Arbitrary text through the registry's URL parsers: provider URLs as they come out of
//! ZooKeeper nodes, etcd keys and registry files (`ProviderUrl`, plain and as an encoded
//! path segment) and registry addresses (`RegistryAddress`).
//!
//! Checks: no panic; a parsed provider URL printed and parsed again is the same URL, and
//! survives the path-segment encoding both ways.

#![no_main]

use libfuzzer_sys::fuzz_target;
use registry::{ProviderUrl, RegistryAddress};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = text.parse::<RegistryAddress>();
    let _ = ProviderUrl::from_path_segment(text);
    let Ok(url) = text.parse::<ProviderUrl>() else {
        return;
    };
    let printed = url.to_string();
    let again: ProviderUrl = printed.parse().expect("a printed URL parses");
    assert_eq!(again.to_string(), printed);
    let segment = url.to_path_segment();
    let back = ProviderUrl::from_path_segment(&segment).expect("an encoded URL decodes");
    assert_eq!(back.to_string(), printed);
});
