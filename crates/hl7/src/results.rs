//! Results out: a report as HL7 v2 ORU^R01 (v2.5.1), sent over MLLP to a site's HIS, which
//! answers with an ACK. The report text goes as TX observations (findings, impression,
//! addenda), the status as F (final) or C (corrected) in OBR-25 and OBX-11, the reader and
//! the signer in OBR-32/33, and the order's identifiers (placer, filler, accession) so the
//! HIS files it under its own request.

use std::time::Duration;

use tokio::net::TcpStream;
use worklist::orders::Order;
use worklist::reports::Report;

use crate::message::{self, escape, msh, timestamp, Charset, Us};
use crate::mllp::{read_frame, write_frame, Frame};

/// A DICOM PN as HL7 XPN repetitions: `Zhang^San=张^三` → `Zhang^San~张^三` (each group
/// its own repetition, components kept).
fn xpn(pn: &str) -> String {
    pn.split('=').filter(|g| !g.is_empty()).map(|g| g.split('^').map(escape).collect::<Vec<_>>().join("^")).collect::<Vec<_>>().join("~")
}

/// The ORU^R01 of a report (corrected when it supersedes another), with its order when it
/// came with one.
pub fn oru(us: &Us, to_app: &str, to_fac: &str, r: &Report, order: Option<&Order>, issuer: &str, control_id: &str, now_ms: i64) -> Vec<u8> {
    let status = if r.corrected || r.supersedes.is_some() { "C" } else { "F" };
    let placer = order.map(|o| o.placer_order_number.as_str()).unwrap_or("");
    let filler = order.map(|o| o.filler_order_number.as_str()).unwrap_or("");
    let accession = order.map(|o| o.accession_number.clone()).or_else(|| r.accession_number.clone()).unwrap_or_default();
    let (code, text) = match order {
        Some(o) => (o.procedure_code.clone(), o.procedure_description.clone()),
        None => (r.modalities.clone(), r.study_description.clone().unwrap_or_default()),
    };
    let signed = r.signed_at.map(|t| timestamp(t, us.utc_offset_hours)).unwrap_or_default();
    let issuer = order.map(|o| o.patient.issuer.as_str()).filter(|s| !s.is_empty()).unwrap_or(issuer);
    let mut segs = vec![
        msh(us, to_app, to_fac, "ORU^R01^ORU_R01", control_id, Charset::Utf8, now_ms),
        format!(
            "PID|1||{}^^^{}||{}||{}|{}",
            escape(&r.patient_id),
            escape(issuer),
            xpn(r.patient_name.as_deref().unwrap_or("")),
            escape(r.patient_birth_date.as_deref().unwrap_or("")),
            escape(r.patient_sex.as_deref().unwrap_or("")),
        ),
        format!("ORC|RE|{}|{}||CM", escape(placer), escape(filler)),
        format!(
            "OBR|1|{}|{}|{}^{}|||{}|||||||||||{}||||{}|||{}|||||||{}|{}",
            escape(placer),
            escape(filler),
            escape(&code),
            escape(&text),
            escape(r.study_date.as_deref().unwrap_or("")),
            escape(&accession),
            signed,
            status,
            // OBR-32 principal result interpreter (who signed), OBR-33 assistant (who wrote)
            escape(r.signer.as_deref().unwrap_or(&r.author)),
            escape(&r.author),
        ),
    ];
    let mut n = 0;
    let mut obx = |ty: &str, id: &str, value: &str| {
        n += 1;
        format!("OBX|{n}|{ty}|{id}||{}||||||{status}|||{signed}", escape(value))
    };
    segs.push(obx("ST", "110180^Study Instance UID^DCM", &r.study_instance_uid));
    if !r.findings.trim().is_empty() {
        segs.push(obx("TX", "59776-5^Procedure findings^LN", &r.findings));
    }
    segs.push(obx("TX", "19005-8^Impression^LN", &r.impression));
    for a in &r.addenda {
        segs.push(obx("TX", "55107-7^Addendum^LN", &format!("{} ({})", a.text, a.author)));
    }
    if let Some(reason) = r.correction_reason.as_deref().filter(|_| status == "C") {
        segs.push(format!("NTE|1||{}", escape(&format!("更正原因 Correction: {reason}"))));
    }
    Charset::Utf8.encode(&(segs.join("\r") + "\r"))
}

/// Send one message to `addr` (host:port) and read its ACK. Ok when the HIS accepted it
/// (MSA-1 AA or CA); Err with what it said otherwise, or why it could not be reached.
pub async fn send(addr: &str, payload: &[u8], timeout: Duration) -> Result<(), String> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        write_frame(&mut s, payload).await.map_err(|e| format!("sending to {addr}: {e}"))?;
        match read_frame(&mut s, timeout, timeout).await.map_err(|e| format!("no ACK from {addr}: {e}"))? {
            Frame::Message(ack) => Ok(ack),
            Frame::Closed => Err(format!("{addr} closed the connection without an ACK")),
        }
    };
    let ack = tokio::time::timeout(timeout, exchange).await.map_err(|_| format!("{addr}: no ACK within {timeout:?}"))??;
    let inbound = message::decode(&ack).map_err(|e| format!("unreadable ACK from {addr}: {e}"))?;
    let msg = message::parse(&inbound.text).map_err(|e| format!("unreadable ACK from {addr}: {e}"))?;
    let msa = msg.segment("MSA").ok_or_else(|| format!("the ACK from {addr} has no MSA segment"))?;
    let code = msa.field(1).map(|f| f.raw_value()).unwrap_or("");
    match code {
        "AA" | "CA" => Ok(()),
        other => {
            let text = msa.field(3).map(|f| message::unescape(f.raw_value(), &msg.separators)).unwrap_or_default();
            Err(format!("the HIS answered {other}: {text}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_repetitions() {
        assert_eq!(xpn("Zhang^San=张^三"), "Zhang^San~张^三");
        assert_eq!(xpn("王^五"), "王^五");
        assert_eq!(xpn("A|B^C"), "A\\F\\B^C");
    }
}
