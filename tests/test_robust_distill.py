"""One student for every resolution, on synthetic faces: distilled over a range of DFs from a teacher that is
near perfect at full resolution, it wins back low-resolution accuracy and keeps high resolution.

The teacher is the HR model of conftest's ``small_demo`` (the demo's SphereFace-4 at a quarter width, trained by
the same commands as benchmarks/bench_robust_distill.py's teacher, on 100 synthetic identities × 6 images);
that script compares all the recipes at the demo's own size (200 × 8), where the student keeps DF 1 exactly;
this test holds the recommended recipe to its claim at the smaller size. Training is deterministic on one
machine; another CPU's arithmetic may move a few of the 600 pairs.
"""

from cli_helpers import benchmark_script

DFS = "1,4,8,12"
HR_TOLERANCE = 0.02  # 12 of 600 pairs at DF 1 (measured at this size: 7; at 200 × 8: none)
LR_GAIN = 0.04  # mean over DF 4, 8, 12 (measured at this size: +7.5 points; at 200 × 8: +6.5)


def test_a_student_distilled_over_df_1_to_12_beats_its_teacher_at_low_resolution_and_keeps_full(small_demo, tmp_path):
    bench = benchmark_script("bench_robust_distill")
    demo, _, _ = small_demo
    data, teacher = demo.parent / "demo-data", demo.parent / "demo-train" / "hr" / "model.pt"
    student = bench.distil(data, teacher, tmp_path / "robust", bench.recipes(12)["uniform-1-12"], epochs=5)
    before, after = bench.accuracy(data, teacher, DFS), bench.accuracy(data, student, DFS)
    assert after[1] >= before[1] - HR_TOLERANCE, (before, after)
    low = [4, 8, 12]
    assert sum(after[df] - before[df] for df in low) / len(low) >= LR_GAIN, (before, after)
    assert all(after[df] >= before[df] for df in low), (before, after)
    assert before[12] < before[1] - 0.3  # the teacher really fails at 8×9 px: there is something to win back
