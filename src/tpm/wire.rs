//! The two TPM 2.0 commands chitin sends, PCR_Extend and PCR_Read of the sha256 bank, marshalled
//! as TCG's TPM 2.0 Library (Part 3) lays them out: big-endian, a 10-byte header (tag, size,
//! command code; a response's third field is its response code), then the parameters. The
//! transports (device, swtpm) in mod.rs carry the bytes.

const ST_NO_SESSIONS: u16 = 0x8001;
const ST_SESSIONS: u16 = 0x8002;
const CC_PCR_EXTEND: u32 = 0x0000_0182;
const CC_PCR_READ: u32 = 0x0000_017e;
/// The password session, here with the empty password that PCRs 16 and 23 take.
const RS_PW: u32 = 0x4000_0009;
const ALG_SHA256: u16 = 0x000b;

fn header(tag: u16, cc: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + body.len());
    out.extend(tag.to_be_bytes());
    out.extend((10 + body.len() as u32).to_be_bytes());
    out.extend(cc.to_be_bytes());
    out.extend(body);
    out
}

/// TPM2_PCR_Extend(pcr, {sha256: digest}), authorized by the empty password.
pub fn pcr_extend(pcr: u32, digest: &[u8; 32]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(pcr.to_be_bytes());
    // The authorization area: its size, then the password session with no nonce, no
    // attributes and an empty password.
    let auth = [RS_PW.to_be_bytes().as_slice(), &[0, 0], &[0], &[0, 0]].concat();
    body.extend((auth.len() as u32).to_be_bytes());
    body.extend(auth);
    body.extend(1u32.to_be_bytes());
    body.extend(ALG_SHA256.to_be_bytes());
    body.extend(digest);
    header(ST_SESSIONS, CC_PCR_EXTEND, &body)
}

/// TPM2_PCR_Read of one PCR of the sha256 bank.
pub fn pcr_read(pcr: u32) -> Vec<u8> {
    let mut select = [0u8; 3];
    select[(pcr / 8) as usize] = 1 << (pcr % 8);
    let mut body = Vec::new();
    body.extend(1u32.to_be_bytes());
    body.extend(ALG_SHA256.to_be_bytes());
    body.push(select.len() as u8);
    body.extend(select);
    header(ST_NO_SESSIONS, CC_PCR_READ, &body)
}

/// The size a response header announces (of the whole response).
pub fn response_size(header: &[u8; 10]) -> usize {
    u32::from_be_bytes(header[2..6].try_into().expect("4 bytes")) as usize
}

/// The parameters of a response, or what its response code says.
pub fn parameters(resp: &[u8]) -> Result<&[u8], String> {
    if resp.len() < 10 || response_size(resp[..10].try_into().expect("10 bytes")) != resp.len() {
        return Err(format!(
            "a response of {} bytes does not hold its header's size",
            resp.len()
        ));
    }
    match u32::from_be_bytes(resp[6..10].try_into().expect("4 bytes")) {
        0 => Ok(&resp[10..]),
        rc => Err(response_code(rc)),
    }
}

/// The response codes a PCR command may meet, named; others in hex.
fn response_code(rc: u32) -> String {
    let what = match rc & 0xfff {
        0x100 => "TPM_RC_INITIALIZE: the TPM has not been started up",
        0x907 => "TPM_RC_LOCALITY: the PCR cannot be extended from this locality",
        0x98e | 0x9a2 => {
            "TPM_RC_AUTH: the PCR wants an authorization other than the empty password"
        }
        0x18b | 0x184 => "TPM_RC_VALUE or TPM_RC_HANDLE: no such PCR",
        0x922 => "TPM_RC_RETRY: busy",
        _ => "",
    };
    match what {
        "" => format!("response code {rc:#x}"),
        w => format!("{w} ({rc:#x})"),
    }
}

/// A reader of big-endian fields, failing on a short buffer.
struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let field = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or_else(|| format!("a PCR_Read response of {} bytes is short", self.bytes.len()))?;
        self.at += n;
        Ok(field)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
}

/// The sha256 value in a PCR_Read response's parameters: update counter, the selection read,
/// then a list of one digest.
pub fn read_value(params: &[u8]) -> Result<[u8; 32], String> {
    let mut f = Fields {
        bytes: params,
        at: 0,
    };
    f.u32()?; // pcrUpdateCounter
    for _ in 0..f.u32()? {
        f.u16()?; // the hash
        let size = f.take(1)?[0] as usize;
        f.take(size)?;
    }
    let digests = f.u32()?;
    if digests != 1 {
        return Err(format!(
            "the TPM returned {digests} digests for one PCR (is the sha256 bank allocated?)"
        ));
    }
    let size = f.u16()? as usize;
    let value = f.take(size)?;
    value
        .try_into()
        .map_err(|_| format!("a sha256 PCR of {size} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_laid_out_as_the_spec_has_them() {
        let cmd = pcr_extend(16, &[0xab; 32]);
        // tag, size 65, PCR_Extend, PCR 16, 9 bytes of authorization, one sha256 digest.
        assert_eq!(cmd.len(), 65);
        assert_eq!(
            cmd[..14],
            [0x80, 0x02, 0, 0, 0, 65, 0, 0, 0x01, 0x82, 0, 0, 0, 16]
        );
        assert_eq!(cmd[14..27], [0, 0, 0, 9, 0x40, 0, 0, 9, 0, 0, 0, 0, 0]);
        assert_eq!(cmd[27..33], [0, 0, 0, 1, 0, 0x0b]);
        let read = pcr_read(23);
        assert_eq!(
            read,
            [
                0x80, 0x01, 0, 0, 0, 20, 0, 0, 0x01, 0x7e, 0, 0, 0, 1, 0, 0x0b, 3, 0, 0, 0x80
            ]
        );
    }

    #[test]
    fn responses_give_the_value_or_name_their_code() {
        let mut resp = vec![0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
        resp.extend(7u32.to_be_bytes());
        resp.extend([0, 0, 0, 1, 0, 0x0b, 3, 0, 0, 1]);
        resp.extend([0, 0, 0, 1, 0, 32]);
        resp.extend([0x5a; 32]);
        let len = resp.len() as u32;
        resp[2..6].copy_from_slice(&len.to_be_bytes());
        assert_eq!(read_value(parameters(&resp).unwrap()).unwrap(), [0x5a; 32]);
        let locality = [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x07];
        let e = parameters(&locality).unwrap_err();
        assert!(e.starts_with("TPM_RC_LOCALITY"), "{e}");
        assert!(
            parameters(&resp[..20]).is_err(),
            "a size that does not match"
        );
    }
}
