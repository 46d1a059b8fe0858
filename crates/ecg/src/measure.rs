//! The intervals readhub measures itself, for every ECG, from the median beat.
//!
//! Method ("readhub median beat v1"), in the order it runs:
//! 1. **Beats.** The spatial velocity of all leads (Σ |x[n+1] − x[n−1]|) integrated over
//!    80 ms; its peaks above 35 % of its 99th percentile, at least 250 ms apart, are the
//!    QRS complexes, each fixed at its peak. RR is the mean of the intervals between them;
//!    the heart rate is 60 000 / RR.
//! 2. **Median beat.** For each lead, the sample-wise median of all complete beats from
//!    400 ms before to 700 ms after the fiducial point.
//! 3. **QRS onset and offset** (global, all leads at once): from the peak of the median
//!    beats' spatial velocity, back and forth to where it stays below 3 % of its height
//!    above the quiet level for 12 ms.
//! 4. **T end** by the tangent method: in each lead with a T wave of at least a quarter of
//!    the largest (and ≥ 50 µV), the tangent at the steepest slope after the T peak meets
//!    the isoelectric level (the PR segment); the latest of those leads (the global T end,
//!    as carts measure it; the tangent alone ends the T early).
//! 5. **P onset** by the tangent method on the steepest upstroke before the P peak, in the
//!    leads with a P wave of at least half the largest (and ≥ 40 µV); none found, no PR.
//! 6. **QTc** by Bazett (QT/√RR) and Fridericia (QT/∛RR), RR in seconds.
//! 7. **Frontal QRS axis** from the net QRS area (onset to offset, above the isoelectric
//!    level) in leads I and aVF: atan2(aVF, I), in degrees from −180 to 180 (I and aVF
//!    are derived from II and III when absent).

use serde::Serialize;

pub const METHOD: &str = "readhub median beat v1: spatial-velocity QRS detection; median beat over -400..+700 ms; \
global QRS onset/offset at 3% of the spatial-velocity peak; T end (latest lead) and P onset by the tangent method; \
QTc Bazett and Fridericia; frontal QRS axis from the QRS area in I and aVF";

/// What readhub measured. Durations in ms, rate in beats per minute, axis in degrees.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Computed {
    pub heart_rate_bpm: f64,
    pub rr_ms: f64,
    pub pr_ms: Option<f64>,
    pub qrs_ms: Option<f64>,
    pub qt_ms: Option<f64>,
    pub qtc_bazett_ms: Option<f64>,
    pub qtc_fridericia_ms: Option<f64>,
    pub qrs_axis_deg: Option<f64>,
    /// beats found in the whole tracing
    pub beats: usize,
    /// beats that went into the median beat
    pub median_of: usize,
    pub method: &'static str,
}

impl Computed {
    /// The rate alone: the beats were found, but no median beat could be delineated.
    fn rate_only(heart_rate: f64, rr: f64, beats: usize, median_of: usize) -> Computed {
        Computed {
            heart_rate_bpm: round1(heart_rate),
            rr_ms: rr.round(),
            pr_ms: None,
            qrs_ms: None,
            qt_ms: None,
            qtc_bazett_ms: None,
            qtc_fridericia_ms: None,
            qrs_axis_deg: None,
            beats,
            median_of,
            method: METHOD,
        }
    }
}

/// The QRS ends where the spatial velocity stays below this share of its height (tried on
/// the sample files against the carts' own QRS: 10 % cut the terminal QRS short, 2 % ran
/// into the ST segment).
const QRS_FRACTION: f64 = 0.03;

/// The shortest tracing measured: two beats need about 1.5 s.
const MIN_SECONDS: f64 = 1.5;

/// Measure an ECG. `leads` are (label, µV samples), all of the same length.
pub fn compute(leads: &[(&str, &[f32])], fs: f64) -> Result<Computed, String> {
    if leads.is_empty() || !(fs > 0.0) {
        return Err("no leads".into());
    }
    let n = leads.iter().map(|(_, s)| s.len()).min().unwrap_or(0);
    if (n as f64) < MIN_SECONDS * fs {
        return Err(format!("the tracing is {:.1} s long; at least {MIN_SECONDS} s is needed", n as f64 / fs));
    }
    let ms = |v: f64| (v * fs / 1000.0).round() as isize;
    let to_ms = |samples: f64| samples * 1000.0 / fs;

    // 1. beats
    let mut vel = vec![0f64; n];
    for (_, s) in leads {
        for k in 1..n - 1 {
            vel[k] += (s[k + 1] - s[k - 1]).abs() as f64;
        }
    }
    let energy = moving_average(&vel, ms(80.0).max(1) as usize);
    let mut sorted = energy.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let p99 = sorted[(sorted.len() as f64 * 0.99) as usize - 1];
    if !(p99 > 0.0) {
        return Err("the tracing is flat".into());
    }
    let threshold = 0.35 * p99;
    let refractory = ms(250.0) as usize;
    let mut peaks: Vec<usize> = Vec::new();
    let mut k = 1;
    while k < n - 1 {
        if energy[k] >= threshold {
            // the highest point of this run above the threshold
            let start = k;
            while k < n - 1 && energy[k] >= threshold {
                k += 1;
            }
            let top = (start..k).max_by(|a, b| energy[*a].total_cmp(&energy[*b])).unwrap_or(start);
            match peaks.last() {
                Some(&last) if top - last < refractory => {
                    if energy[top] > energy[last] {
                        *peaks.last_mut().expect("non-empty") = top;
                    }
                }
                _ => peaks.push(top),
            }
        }
        k += 1;
    }
    if peaks.len() < 2 {
        return Err(format!("{} QRS complex(es) found; at least 2 are needed", peaks.len()));
    }
    let rr_samples: Vec<f64> = peaks.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    let rr = to_ms(rr_samples.iter().sum::<f64>() / rr_samples.len() as f64);
    let heart_rate = 60_000.0 / rr;

    // 2. median beat
    let (pre, post) = (ms(400.0) as usize, ms(700.0) as usize);
    let whole: Vec<usize> = peaks.iter().copied().filter(|p| *p >= pre && p + post < n).collect();
    if whole.is_empty() {
        return Ok(Computed::rate_only(heart_rate, rr, peaks.len(), 0));
    }
    let len = pre + post;
    let median: Vec<(&str, Vec<f64>)> = leads
        .iter()
        .map(|(label, s)| {
            let mut beat = vec![0f64; len];
            let mut column = Vec::with_capacity(whole.len());
            for (j, b) in beat.iter_mut().enumerate() {
                column.clear();
                column.extend(whole.iter().map(|p| s[p - pre + j] as f64));
                *b = median_of(&mut column);
            }
            (*label, beat)
        })
        .collect();

    // 3. QRS onset and offset
    let mut sv = vec![0f64; len];
    for (_, m) in &median {
        for j in 1..len - 1 {
            sv[j] += (m[j + 1] - m[j - 1]).abs();
        }
    }
    // smoothed over ±3 ms; with the central difference that widens a sharp edge by
    // `spread` samples on each side, taken back below
    let half = ms(3.0).max(0) as usize;
    let spread = 1 + half;
    let sv = moving_average(&sv, 2 * half + 1);
    let within = |a: isize, b: isize| (a.max(1) as usize)..(b.min(len as isize - 1) as usize);
    let peak = within(pre as isize - ms(60.0), pre as isize + ms(60.0)).max_by(|a, b| sv[*a].total_cmp(&sv[*b])).unwrap_or(pre);
    let quiet_before = min_average(&sv, within(pre as isize - ms(300.0), pre as isize - ms(20.0)), ms(30.0) as usize);
    let quiet_after = min_average(&sv, within(pre as isize + ms(40.0), pre as isize + ms(300.0)), ms(30.0) as usize);
    let run = ms(12.0).max(2) as usize;
    let on_threshold = quiet_before + QRS_FRACTION * (sv[peak] - quiet_before);
    let off_threshold = quiet_after + QRS_FRACTION * (sv[peak] - quiet_after);
    let qrs_on = walk(&sv, peak, -1, on_threshold, run, ms(150.0) as usize);
    let qrs_off = walk(&sv, peak, 1, off_threshold, run, ms(200.0) as usize);
    let (qrs_on, qrs_off) = match (qrs_on, qrs_off) {
        (Some(a), Some(b)) if b > a + 2 * spread => (a + spread, b - spread),
        _ => {
            return Ok(Computed::rate_only(heart_rate, rr, peaks.len(), whole.len()))
        }
    };
    // the isoelectric level of each lead: the PR segment just before the QRS
    let iso: Vec<f64> = median
        .iter()
        .map(|(_, m)| {
            let r = within(qrs_on as isize - ms(20.0), qrs_on as isize - ms(4.0).max(1));
            if r.is_empty() { m[qrs_on] } else { r.clone().map(|j| m[j]).sum::<f64>() / r.len() as f64 }
        })
        .collect();

    // 4. T end
    let rr_samples_mean = rr * fs / 1000.0;
    let t_limit = (pre as f64 + (0.7 * rr_samples_mean).max(ms(350.0) as f64)).min((len - 2) as f64) as usize;
    let t_from = qrs_off + ms(80.0) as usize;
    let mut t_ends: Vec<(f64, f64)> = Vec::new();
    if t_from + 2 < t_limit {
        for ((_, m), base) in median.iter().zip(&iso) {
            let tp = (t_from..t_limit).max_by(|a, b| (m[*a] - base).abs().total_cmp(&(m[*b] - base).abs())).unwrap_or(t_from);
            let amp = (m[tp] - base).abs();
            let sign = (m[tp] - base).signum();
            // the steepest slope back toward the baseline after the peak
            let Some(k) = (tp + 1..t_limit).min_by(|a, b| (sign * (m[a + 1] - m[a - 1])).total_cmp(&(sign * (m[b + 1] - m[b - 1])))) else { continue };
            let slope = (m[k + 1] - m[k - 1]) / 2.0;
            if sign * slope >= 0.0 {
                continue;
            }
            let end = (k as f64 + (base - m[k]) / slope).clamp(tp as f64, t_limit as f64);
            t_ends.push((amp, end));
        }
    }
    let t_end = latest(&t_ends, 50.0);

    // 5. P onset
    // after the previous beat's T wave (when the rate is fast, it ends near this P)
    let previous_t_end = t_end.map_or(0, |e| (e - rr_samples_mean) as isize + ms(10.0));
    let p_from = (qrs_on as isize - ms(300.0).min((0.45 * rr_samples_mean) as isize)).max(previous_t_end).max(2) as usize;
    let p_to = qrs_on.saturating_sub(ms(30.0) as usize);
    let mut p_ons: Vec<(f64, f64)> = Vec::new();
    if p_from + 4 < p_to {
        for ((_, m), base) in median.iter().zip(&iso) {
            let pp = (p_from..p_to).max_by(|a, b| (m[*a] - base).abs().total_cmp(&(m[*b] - base).abs())).unwrap_or(p_from);
            let amp = (m[pp] - base).abs();
            let sign = (m[pp] - base).signum();
            let lo = pp.saturating_sub(ms(120.0) as usize).max(p_from.saturating_sub(ms(60.0) as usize)).max(1);
            let Some(k) = (lo..pp).max_by(|a, b| (sign * (m[a + 1] - m[a - 1])).total_cmp(&(sign * (m[b + 1] - m[b - 1])))) else { continue };
            let slope = (m[k + 1] - m[k - 1]) / 2.0;
            if sign * slope <= 0.0 {
                continue;
            }
            let onset = (k as f64 - (m[k] - base) / slope).clamp(lo as f64, pp as f64);
            p_ons.push((amp, onset));
        }
    }
    let p_on = pick(&p_ons, 40.0);

    // 7. axis
    let area = |label: &str| -> Option<f64> {
        let (i, (_, m)) = median.iter().enumerate().find(|(_, (l, _))| *l == label)?;
        Some((qrs_on..=qrs_off).map(|j| m[j] - iso[i]).sum::<f64>())
    };
    let (lead_i, avf) = match (area("I"), area("aVF")) {
        (Some(i), Some(f)) => (Some(i), Some(f)),
        _ => match (area("II"), area("III")) {
            (Some(ii), Some(iii)) => (Some(ii - iii), Some((ii + iii) / 2.0)),
            _ => (None, None),
        },
    };
    let axis = match (lead_i, avf) {
        (Some(i), Some(f)) if i.abs() + f.abs() > 0.0 => Some(f.atan2(i).to_degrees().round()),
        _ => None,
    };

    let qt = t_end.map(|e| to_ms(e - qrs_on as f64));
    let rr_s = rr / 1000.0;
    Ok(Computed {
        heart_rate_bpm: round1(heart_rate),
        rr_ms: rr.round(),
        pr_ms: p_on.map(|p| to_ms(qrs_on as f64 - p).round()).filter(|v| *v > 0.0),
        qrs_ms: Some(to_ms((qrs_off - qrs_on) as f64).round()),
        qt_ms: qt.map(f64::round),
        qtc_bazett_ms: qt.map(|q| (q / rr_s.sqrt()).round()),
        qtc_fridericia_ms: qt.map(|q| (q / rr_s.cbrt()).round()),
        qrs_axis_deg: axis,
        beats: peaks.len(),
        median_of: whole.len(),
        method: METHOD,
    })
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The median of the leads' values whose wave is at least half the largest and at least
/// `min_uv`.
fn pick(found: &[(f64, f64)], min_uv: f64) -> Option<f64> {
    let largest = found.iter().map(|(a, _)| *a).fold(0.0, f64::max);
    let mut v: Vec<f64> = found.iter().filter(|(a, _)| *a >= largest / 2.0 && *a >= min_uv).map(|(_, x)| *x).collect();
    (!v.is_empty()).then(|| median_of(&mut v))
}

fn latest(found: &[(f64, f64)], min_uv: f64) -> Option<f64> {
    let largest = found.iter().map(|(a, _)| *a).fold(0.0, f64::max);
    found.iter().filter(|(a, _)| *a >= largest / 4.0 && *a >= min_uv).map(|(_, x)| *x).reduce(f64::max)
}

fn median_of(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
}

/// A centred moving average over `w` samples.
fn moving_average(x: &[f64], w: usize) -> Vec<f64> {
    let w = w.max(1);
    let mut prefix = Vec::with_capacity(x.len() + 1);
    prefix.push(0.0);
    for v in x {
        prefix.push(prefix.last().copied().unwrap_or(0.0) + v);
    }
    (0..x.len())
        .map(|i| {
            let a = i.saturating_sub(w / 2);
            let b = (i + w - w / 2).min(x.len());
            (prefix[b] - prefix[a]) / (b - a) as f64
        })
        .collect()
}

/// The lowest `w`-sample average within `range`.
fn min_average(x: &[f64], range: std::ops::Range<usize>, w: usize) -> f64 {
    let w = w.max(1);
    if range.len() < w {
        return range.clone().map(|i| x[i]).fold(f64::INFINITY, f64::min).min(0.0f64.max(x.iter().copied().fold(f64::INFINITY, f64::min)));
    }
    (range.start..=range.end - w).map(|s| x[s..s + w].iter().sum::<f64>() / w as f64).fold(f64::INFINITY, f64::min)
}

/// From `from`, step by `dir` until `x` has stayed at or below `threshold` for `run`
/// samples; the first of those samples (nearest `from`) is the answer. At most `limit` steps.
fn walk(x: &[f64], from: usize, dir: isize, threshold: f64, run: usize, limit: usize) -> Option<usize> {
    let mut below = 0;
    let mut first = None;
    let mut k = from as isize;
    for _ in 0..limit {
        k += dir;
        if k < 0 || k as usize >= x.len() {
            return first;
        }
        if x[k as usize] <= threshold {
            if below == 0 {
                first = Some(k as usize);
            }
            below += 1;
            if below >= run {
                return first;
            }
        } else {
            below = 0;
            first = None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A beat with waves of compact support, so its intervals are exact: a half-sine P of
    /// 100 ms, PR 160 ms (P onset to QRS onset), a triangular QRS of 90 ms (q, R, S), a
    /// half-sine T ending 400 ms after the QRS onset (QT 400).
    fn synthetic(rr_ms: f64, fs: f64, seconds: f64, scale: f64) -> Vec<f32> {
        let n = (seconds * fs) as usize;
        let mut x = vec![0f32; n];
        let mut onset = 300.0; // ms: QRS onset of the first beat
        while onset + 500.0 < seconds * 1000.0 {
            for (k, v) in x.iter_mut().enumerate() {
                let t = k as f64 * 1000.0 / fs - onset; // ms from QRS onset
                let half_sine = |start: f64, dur: f64, amp: f64| if t >= start && t <= start + dur { amp * (std::f64::consts::PI * (t - start) / dur).sin() } else { 0.0 };
                let tri = |a: f64, b: f64, c: f64, amp: f64| if t >= a && t <= b { amp * (t - a) / (b - a) } else if t > b && t <= c { amp * (c - t) / (c - b) } else { 0.0 };
                let y = half_sine(-160.0, 100.0, 150.0) + tri(0.0, 10.0, 20.0, -100.0) + tri(20.0, 45.0, 70.0, 1200.0) + tri(70.0, 80.0, 90.0, -250.0) + half_sine(240.0, 160.0, 300.0);
                *v += (y * scale) as f32;
            }
            onset += rr_ms;
        }
        x
    }

    #[test]
    fn synthetic_intervals_within_tolerance() {
        for (rr, fs) in [(800.0, 500.0), (1000.0, 250.0), (600.0, 1000.0)] {
            let scales = [0.6, 1.0, 0.4, -0.8, 0.3, 0.7];
            let labels = ["I", "II", "III", "aVR", "aVL", "aVF"];
            let data: Vec<Vec<f32>> = scales.iter().map(|s| synthetic(rr, fs, 10.0, *s)).collect();
            let leads: Vec<(&str, &[f32])> = labels.iter().zip(&data).map(|(l, d)| (*l, d.as_slice())).collect();
            let c = compute(&leads, fs).unwrap();
            assert!((c.rr_ms - rr).abs() <= 2.0, "{c:?}");
            assert!((c.heart_rate_bpm - 60_000.0 / rr).abs() <= 1.0, "{c:?}");
            let near = |v: Option<f64>, want: f64, tol: f64| v.is_some_and(|v| (v - want).abs() <= tol);
            assert!(near(c.qrs_ms, 90.0, 10.0), "QRS {c:?}");
            assert!(near(c.pr_ms, 160.0, 10.0), "PR {c:?}");
            assert!(near(c.qt_ms, 400.0, 10.0), "QT {c:?}");
            // every lead is a scaled copy: I = 0.6, aVF = 0.7 → atan2(0.7, 0.6) ≈ 49°
            assert!(near(c.qrs_axis_deg, 49.0, 15.0), "axis {c:?}");
            let qtc = 400.0 / (rr / 1000.0f64).sqrt();
            assert!(near(c.qtc_bazett_ms, qtc, 12.0), "QTc {c:?}");
        }
    }

    #[test]
    fn flat_and_short_tracings_say_why() {
        let flat = vec![0f32; 5000];
        assert!(compute(&[("II", &flat)], 500.0).unwrap_err().contains("flat"));
        assert!(compute(&[("II", &flat[..100])], 500.0).unwrap_err().contains("long"));
    }
}
