//! Colours the whole app shares: one categorical colour per encoder block (Tableau 10, readable for
//! colour-blind users) and the viridis scale of the heat maps.

use crate::view::Tap;
use eframe::egui::Color32;

/// Tableau 10.
const TABLEAU: [[u8; 3]; 10] = [
    [78, 121, 167],
    [242, 142, 43],
    [225, 87, 89],
    [118, 183, 178],
    [89, 161, 79],
    [237, 201, 72],
    [176, 122, 161],
    [255, 157, 167],
    [156, 117, 95],
    [186, 176, 172],
];

/// The colour of a head's tap, the same in every panel: the encoder output first, then block j.
pub fn tap_color(tap: Option<Tap>) -> Color32 {
    let i = match tap {
        Some(Tap::Output) | None => 0,
        Some(Tap::Block(j)) => 1 + j % (TABLEAU.len() - 1),
    };
    let [r, g, b] = TABLEAU[i];
    Color32::from_rgb(r, g, b)
}

/// The colour of category `i` (a class or a cluster): Tableau 10, then hues spaced by the golden
/// angle so that any number of categories stay distinguishable.
pub fn category(i: usize) -> Color32 {
    if let Some([r, g, b]) = TABLEAU.get(i) {
        return Color32::from_rgb(*r, *g, *b);
    }
    let hue = (i as f32 * 0.618_034).fract();
    let value = if i.is_multiple_of(2) { 0.85 } else { 0.65 };
    eframe::egui::ecolor::Hsva::new(hue, 0.65, value, 1.0).into()
}

/// Viridis at nine stops (matplotlib's values), interpolated linearly.
const VIRIDIS: [[f32; 3]; 9] = [
    [68.0, 1.0, 84.0],
    [71.0, 44.0, 122.0],
    [59.0, 81.0, 139.0],
    [44.0, 113.0, 142.0],
    [33.0, 144.0, 141.0],
    [39.0, 173.0, 129.0],
    [92.0, 200.0, 99.0],
    [170.0, 220.0, 50.0],
    [253.0, 231.0, 37.0],
];

/// Viridis at `t` in [0, 1] (clamped; NaN gives the lowest colour).
pub fn viridis(t: f64) -> Color32 {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) } as f32;
    let x = t * (VIRIDIS.len() - 1) as f32;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f32;
    let c: Vec<u8> = (0..3)
        .map(|k| (VIRIDIS[i][k] + f * (VIRIDIS[i + 1][k] - VIRIDIS[i][k])).round() as u8)
        .collect();
    Color32::from_rgb(c[0], c[1], c[2])
}

/// Black or white, whichever reads better on `bg`.
pub fn text_on(bg: Color32) -> Color32 {
    let l = 0.299 * bg.r() as f32 + 0.587 * bg.g() as f32 + 0.114 * bg.b() as f32;
    if l > 140.0 {
        Color32::BLACK
    } else {
        Color32::WHITE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_ends_and_midpoint_are_matplotlibs() {
        assert_eq!(viridis(0.0), Color32::from_rgb(68, 1, 84));
        assert_eq!(viridis(1.0), Color32::from_rgb(253, 231, 37));
        assert_eq!(viridis(0.5), Color32::from_rgb(33, 144, 141));
        assert_eq!(viridis(-1.0), viridis(0.0));
        assert_eq!(viridis(f64::NAN), viridis(0.0));
    }

    #[test]
    fn blocks_keep_distinct_colours_and_text_stays_readable() {
        let c: Vec<Color32> = (0..9).map(|j| tap_color(Some(Tap::Block(j)))).collect();
        for (i, a) in c.iter().enumerate() {
            assert!(c[i + 1..].iter().all(|b| b != a));
            assert_ne!(*a, tap_color(Some(Tap::Output)));
        }
        assert_eq!(text_on(viridis(1.0)), Color32::BLACK);
        assert_eq!(text_on(viridis(0.0)), Color32::WHITE);
    }
}
