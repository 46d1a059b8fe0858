//! The JPEG encoders and resizers side by side on a real film (BENCHMARKS.md, issue 15):
//! `cargo run --release -p dicom-media --example encoders -- FILE.dcm`
//! Prints the median of 15 runs of each step.

use std::time::Instant;

use dicom_pixeldata::image::{self, DynamicImage};
use dicom_pixeldata::{ConvertOptions, PixelDecoder, VoiLutOption};

fn median(mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..15)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

fn main() {
    let path = std::env::args().nth(1).expect("a DICOM file");
    let bytes = std::fs::read(&path).unwrap();
    let obj = dicom_object::from_reader(&bytes[128..]).unwrap();
    let decoded = obj.decode_pixel_data().unwrap();
    let img = decoded
        .to_dynamic_image_with_options(0, &ConvertOptions::new().with_voi_lut(VoiLutOption::First).force_8bit())
        .unwrap();
    let img = DynamicImage::ImageLuma8(img.to_luma8());
    let (w, h) = (img.width(), img.height());
    println!("{path}: {w}×{h}");
    println!("decode (open + decode_pixel_data + window to 8 bits): {:.1} ms", median(|| {
        let obj = dicom_object::from_reader(&bytes[128..]).unwrap();
        let d = obj.decode_pixel_data().unwrap();
        let _ = d.to_dynamic_image_with_options(0, &ConvertOptions::new().with_voi_lut(VoiLutOption::First).force_8bit()).unwrap();
    }));
    let mut size = (0, 0);
    let a = median(|| {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&img).unwrap();
        size.0 = out.len();
    });
    let b = median(|| {
        let out = libjpeg_turbo_rs::compress(img.as_bytes(), w as usize, h as usize, libjpeg_turbo_rs::PixelFormat::Grayscale, 90, libjpeg_turbo_rs::Subsampling::S444).unwrap();
        size.1 = out.len();
    });
    println!("JPEG q90 full size: image/jpeg-encoder {a:.1} ms ({} B), libjpeg-turbo-rs {b:.1} ms ({} B)", size.0, size.1);
    let c = median(|| {
        let _ = img.resize(1024, 1024, image::imageops::FilterType::Triangle);
    });
    let d = median(|| {
        let _ = dicom_media::render::fit(img.clone(), 1024, 1024);
    });
    let clone = median(|| {
        let _ = img.clone();
    });
    println!("resize to fit 1024: image Triangle {c:.1} ms, fast_image_resize bilinear {:.1} ms (+ {clone:.1} ms clone)", d - clone);
}
