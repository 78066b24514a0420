//! The chart: wall time against suite size, one line per approach and runner,
//! both axes logarithmic.

use std::path::Path;

use plotters::prelude::*;

use crate::cli::{Approach, Runner};
use crate::render::wall;
use crate::Cell;

fn colour(approach: Approach) -> RGBColor {
    match approach {
        Approach::Cleanroom => RGBColor(0x1b, 0x9e, 0x77),
        Approach::CleanroomWarm => RGBColor(0x66, 0xa6, 0x1e),
        Approach::CleanroomLocal => RGBColor(0x1f, 0x78, 0xb4),
        Approach::PerTest => RGBColor(0xd9, 0x5f, 0x02),
        Approach::Singleton => RGBColor(0x75, 0x70, 0xb3),
        Approach::SqlxTest => RGBColor(0xe7, 0x29, 0x8a),
        Approach::Floor => RGBColor(0x66, 0x66, 0x66),
    }
}

/// One line of the chart: an approach under a runner, its points (N, seconds).
pub type Series = (Approach, Runner, Vec<(f64, f64)>);

/// The series to draw.
pub fn series(cells: &[Cell]) -> Vec<Series> {
    let mut out = Vec::new();
    for approach in Approach::ALL {
        for runner in [Runner::CargoTest, Runner::Nextest] {
            let mut points: Vec<(f64, f64)> = cells
                .iter()
                .filter(|c| c.approach == approach && c.runner == runner)
                .filter_map(|c| Some((c.n as f64, wall(c)?)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            if !points.is_empty() {
                out.push((approach, runner, points));
            }
        }
    }
    out
}

/// Draws the chart as SVG at `path`.
pub fn draw(path: &Path, cells: &[Cell]) -> Result<(), Box<dyn std::error::Error>> {
    let series = series(cells);
    let all = series.iter().flat_map(|(_, _, p)| p.iter());
    let (x_max, y_min, y_max) =
        all.fold((10.0f64, f64::MAX, 0.0f64), |(x, lo, hi), &(n, s)| (x.max(n), lo.min(s), hi.max(s)));
    let y_min = if y_min == f64::MAX { 0.1 } else { (y_min * 0.7).max(0.05) };
    let y_max = (y_max * 1.4).max(y_min * 2.0);

    let root = SVGBackend::new(path, (860, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Wall time of the whole run against suite size (log-log)", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((8.0f64..x_max * 1.25).log_scale(), (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("tests in the suite (N)")
        .y_desc("wall time (s)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| if *y < 1.0 { format!("{y:.1}") } else { format!("{y:.0}") })
        .draw()?;

    for (approach, runner, points) in series {
        let c = colour(approach);
        let style = ShapeStyle { color: c.to_rgba(), filled: true, stroke_width: 2 };
        let label = format!("{} · {}", approach.title(), runner.title());
        match runner {
            Runner::CargoTest => {
                chart.draw_series(LineSeries::new(points.clone(), style))?.label(label).legend(move |(x, y)| {
                    PathElement::new(
                        vec![(x, y), (x + 18, y)],
                        ShapeStyle { color: c.to_rgba(), filled: true, stroke_width: 2 },
                    )
                });
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, style)))?;
            }
            Runner::Nextest => {
                chart.draw_series(DashedLineSeries::new(points.clone(), 6, 4, style))?.label(label).legend(
                    move |(x, y)| {
                        PathElement::new(
                            vec![(x, y), (x + 6, y)],
                            ShapeStyle { color: c.to_rgba(), filled: true, stroke_width: 2 },
                        )
                    },
                );
                chart.draw_series(points.iter().map(|&p| TriangleMarker::new(p, 5, style)))?;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sample;

    fn cell(n: usize, runner: Runner, approach: Approach, wall: f64) -> Cell {
        Cell { n, runner, approach, samples: vec![Sample { wall, ok: true, ..Sample::default() }] }
    }

    mod should {
        use super::*;

        #[test]
        fn draw_one_line_per_approach_and_runner() {
            let cells = vec![
                cell(10, Runner::CargoTest, Approach::Cleanroom, 3.0),
                cell(40, Runner::CargoTest, Approach::Cleanroom, 4.0),
                cell(10, Runner::CargoTest, Approach::PerTest, 12.0),
                cell(40, Runner::CargoTest, Approach::PerTest, 45.0),
                cell(10, Runner::Nextest, Approach::Cleanroom, 4.0),
                cell(10, Runner::Nextest, Approach::SqlxTest, 6.0),
            ];
            let s = series(&cells);
            assert_eq!(s.len(), 4);
            assert_eq!(s[0].2, [(10.0, 3.0), (40.0, 4.0)]);

            let dir = std::env::temp_dir().join(format!("cleanroom-bench-chart-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("chart.svg");
            draw(&path, &cells).unwrap();
            let svg = std::fs::read_to_string(&path).unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
            assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
            assert!(svg.contains("container per test · cargo test"), "the legend names each line");
            assert!(svg.contains("cleanroom · cargo nextest run"));
            assert!(svg.contains("#[sqlx::test] · cargo nextest run"));
        }

        #[test]
        fn give_every_approach_a_colour_of_its_own() {
            let colours: std::collections::BTreeSet<(u8, u8, u8)> = Approach::ALL
                .into_iter()
                .map(|a| {
                    let RGBColor(r, g, b) = colour(a);
                    (r, g, b)
                })
                .collect();
            assert_eq!(colours.len(), Approach::ALL.len());
        }
    }
}
