package dev.kiln.backend.cpu.internal;

import static dev.kiln.backend.cpu.internal.Conversions.F;
import static dev.kiln.backend.cpu.internal.Conversions.I;
import static dev.kiln.backend.cpu.internal.Conversions.L;
import static dev.kiln.backend.cpu.internal.Conversions.LE;

import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Register-tiled kernels for batched decode on bf16 weights: four weight rows against four, two or one activation
 * rows over a run of columns.
 *
 * <p>Each bf16 vector loaded is widened once in registers (see {@link Bf16Weight} for the even/odd trick) and used
 * by every activation row of the group, and each activation vector by all four weight rows: a 4 × 4 tile does 32
 * fused multiply-adds per 4 weight and 8 activation loads. Loads are what limits these kernels on the development
 * machine (measured: one 512-bit load per FMA runs at half the FMA peak, one per four FMAs at the peak), so the
 * widening is redone in registers for each group of activation rows, where its shifts and masks fill spare FMA
 * slots, rather than written to a buffer and loaded back.
 *
 * <p>The sums stay vectors (one per weight row and activation row, whose lanes add up interleaved columns) and live
 * in a buffer between runs of columns, so a run costs a load and a store per sum, not a horizontal reduction; the
 * caller reduces them once at the end. Layouts: weight row {@code i} starts at byte {@code bi} of {@code w}. The
 * activation rows of a group are interleaved block by block: for the block of columns starting at {@code c},
 * activation row {@code t} of a group of {@code n} rows holds its even columns at {@code xq[xBase + n·c + t·2L]}
 * and its odd ones {@code L} floats further, so the kernel reads one sequential stream through one index. The sum
 * of weight row {@code i} and activation row {@code t} is at {@code sums[sumOffset + i·sumStride + t·L]}. Columns
 * {@code from .. to-1} are whole permutation blocks.
 *
 * <p>C2 pitfalls, checked with {@code -XX:+PrintInlining} and {@code -Xlog:gc}: each kernel is its own method, with
 * at most 16 sums, 4 loaded and 4 widened weights and 1 activation live, so that every vector stays in a register.
 * The widening is written out in each kernel rather than called: a kernel this size passes C2's node-count
 * inlining cutoff, after which calls to small helpers are no longer inlined, and a vector returned from a call
 * that is not inlined is boxed on the heap (that made the 4 × 4 kernel 10x slower). The Vector API's own methods
 * are force-inlined past the cutoff.
 */
final class Bf16Tiles {
    /** Columns per block of the even/odd permutation. */
    static final int BLOCK = 2 * L;
    /** Weight rows per kernel call. */
    static final int ROWS = 4;
    /** The high half of each int: an odd column's bf16 bits in place. */
    private static final int ODD = 0xffff0000;

    private Bf16Tiles() {}

    /** Four weight rows against four activation rows. */
    static void dot4x4(MemorySegment w, long b0, long b1, long b2, long b3, int from, int to, float[] xq,
                       int xBase, float[] sums, int sumOffset, int sumStride) {
        int s0 = sumOffset, s1 = s0 + sumStride, s2 = s1 + sumStride, s3 = s2 + sumStride;
        FloatVector c00 = FloatVector.fromArray(F, sums, s0);
        FloatVector c01 = FloatVector.fromArray(F, sums, s0 + L);
        FloatVector c02 = FloatVector.fromArray(F, sums, s0 + 2 * L);
        FloatVector c03 = FloatVector.fromArray(F, sums, s0 + 3 * L);
        FloatVector c10 = FloatVector.fromArray(F, sums, s1);
        FloatVector c11 = FloatVector.fromArray(F, sums, s1 + L);
        FloatVector c12 = FloatVector.fromArray(F, sums, s1 + 2 * L);
        FloatVector c13 = FloatVector.fromArray(F, sums, s1 + 3 * L);
        FloatVector c20 = FloatVector.fromArray(F, sums, s2);
        FloatVector c21 = FloatVector.fromArray(F, sums, s2 + L);
        FloatVector c22 = FloatVector.fromArray(F, sums, s2 + 2 * L);
        FloatVector c23 = FloatVector.fromArray(F, sums, s2 + 3 * L);
        FloatVector c30 = FloatVector.fromArray(F, sums, s3);
        FloatVector c31 = FloatVector.fromArray(F, sums, s3 + L);
        FloatVector c32 = FloatVector.fromArray(F, sums, s3 + 2 * L);
        FloatVector c33 = FloatVector.fromArray(F, sums, s3 + 3 * L);
        for (int c = from; c < to; c += BLOCK) {
            long off = 2L * c;
            int xi = xBase + 4 * c;
            IntVector p0 = IntVector.fromMemorySegment(I, w, b0 + off, LE);
            IntVector p1 = IntVector.fromMemorySegment(I, w, b1 + off, LE);
            IntVector p2 = IntVector.fromMemorySegment(I, w, b2 + off, LE);
            IntVector p3 = IntVector.fromMemorySegment(I, w, b3 + off, LE);
            FloatVector a0 = p0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector a1 = p1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector a2 = p2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector a3 = p3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector b = FloatVector.fromArray(F, xq, xi);
            c00 = a0.fma(b, c00);
            c10 = a1.fma(b, c10);
            c20 = a2.fma(b, c20);
            c30 = a3.fma(b, c30);
            b = FloatVector.fromArray(F, xq, xi + 2 * L);
            c01 = a0.fma(b, c01);
            c11 = a1.fma(b, c11);
            c21 = a2.fma(b, c21);
            c31 = a3.fma(b, c31);
            b = FloatVector.fromArray(F, xq, xi + 4 * L);
            c02 = a0.fma(b, c02);
            c12 = a1.fma(b, c12);
            c22 = a2.fma(b, c22);
            c32 = a3.fma(b, c32);
            b = FloatVector.fromArray(F, xq, xi + 6 * L);
            c03 = a0.fma(b, c03);
            c13 = a1.fma(b, c13);
            c23 = a2.fma(b, c23);
            c33 = a3.fma(b, c33);
            a0 = p0.and(ODD).reinterpretAsFloats();
            a1 = p1.and(ODD).reinterpretAsFloats();
            a2 = p2.and(ODD).reinterpretAsFloats();
            a3 = p3.and(ODD).reinterpretAsFloats();
            b = FloatVector.fromArray(F, xq, xi + L);
            c00 = a0.fma(b, c00);
            c10 = a1.fma(b, c10);
            c20 = a2.fma(b, c20);
            c30 = a3.fma(b, c30);
            b = FloatVector.fromArray(F, xq, xi + 3 * L);
            c01 = a0.fma(b, c01);
            c11 = a1.fma(b, c11);
            c21 = a2.fma(b, c21);
            c31 = a3.fma(b, c31);
            b = FloatVector.fromArray(F, xq, xi + 5 * L);
            c02 = a0.fma(b, c02);
            c12 = a1.fma(b, c12);
            c22 = a2.fma(b, c22);
            c32 = a3.fma(b, c32);
            b = FloatVector.fromArray(F, xq, xi + 7 * L);
            c03 = a0.fma(b, c03);
            c13 = a1.fma(b, c13);
            c23 = a2.fma(b, c23);
            c33 = a3.fma(b, c33);
        }
        c00.intoArray(sums, s0);
        c01.intoArray(sums, s0 + L);
        c02.intoArray(sums, s0 + 2 * L);
        c03.intoArray(sums, s0 + 3 * L);
        c10.intoArray(sums, s1);
        c11.intoArray(sums, s1 + L);
        c12.intoArray(sums, s1 + 2 * L);
        c13.intoArray(sums, s1 + 3 * L);
        c20.intoArray(sums, s2);
        c21.intoArray(sums, s2 + L);
        c22.intoArray(sums, s2 + 2 * L);
        c23.intoArray(sums, s2 + 3 * L);
        c30.intoArray(sums, s3);
        c31.intoArray(sums, s3 + L);
        c32.intoArray(sums, s3 + 2 * L);
        c33.intoArray(sums, s3 + 3 * L);
    }

    /** Four weight rows against two activation rows. */
    static void dot4x2(MemorySegment w, long b0, long b1, long b2, long b3, int from, int to, float[] xq,
                       int xBase, float[] sums, int sumOffset, int sumStride) {
        int s0 = sumOffset, s1 = s0 + sumStride, s2 = s1 + sumStride, s3 = s2 + sumStride;
        FloatVector c00 = FloatVector.fromArray(F, sums, s0);
        FloatVector c01 = FloatVector.fromArray(F, sums, s0 + L);
        FloatVector c10 = FloatVector.fromArray(F, sums, s1);
        FloatVector c11 = FloatVector.fromArray(F, sums, s1 + L);
        FloatVector c20 = FloatVector.fromArray(F, sums, s2);
        FloatVector c21 = FloatVector.fromArray(F, sums, s2 + L);
        FloatVector c30 = FloatVector.fromArray(F, sums, s3);
        FloatVector c31 = FloatVector.fromArray(F, sums, s3 + L);
        for (int c = from; c < to; c += BLOCK) {
            long off = 2L * c;
            int xi = xBase + 2 * c;
            IntVector p0 = IntVector.fromMemorySegment(I, w, b0 + off, LE);
            IntVector p1 = IntVector.fromMemorySegment(I, w, b1 + off, LE);
            IntVector p2 = IntVector.fromMemorySegment(I, w, b2 + off, LE);
            IntVector p3 = IntVector.fromMemorySegment(I, w, b3 + off, LE);
            FloatVector a0 = p0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector a1 = p1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector a2 = p2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector a3 = p3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector b = FloatVector.fromArray(F, xq, xi);
            c00 = a0.fma(b, c00);
            c10 = a1.fma(b, c10);
            c20 = a2.fma(b, c20);
            c30 = a3.fma(b, c30);
            b = FloatVector.fromArray(F, xq, xi + 2 * L);
            c01 = a0.fma(b, c01);
            c11 = a1.fma(b, c11);
            c21 = a2.fma(b, c21);
            c31 = a3.fma(b, c31);
            a0 = p0.and(ODD).reinterpretAsFloats();
            a1 = p1.and(ODD).reinterpretAsFloats();
            a2 = p2.and(ODD).reinterpretAsFloats();
            a3 = p3.and(ODD).reinterpretAsFloats();
            b = FloatVector.fromArray(F, xq, xi + L);
            c00 = a0.fma(b, c00);
            c10 = a1.fma(b, c10);
            c20 = a2.fma(b, c20);
            c30 = a3.fma(b, c30);
            b = FloatVector.fromArray(F, xq, xi + 3 * L);
            c01 = a0.fma(b, c01);
            c11 = a1.fma(b, c11);
            c21 = a2.fma(b, c21);
            c31 = a3.fma(b, c31);
        }
        c00.intoArray(sums, s0);
        c01.intoArray(sums, s0 + L);
        c10.intoArray(sums, s1);
        c11.intoArray(sums, s1 + L);
        c20.intoArray(sums, s2);
        c21.intoArray(sums, s2 + L);
        c30.intoArray(sums, s3);
        c31.intoArray(sums, s3 + L);
    }

    /** Four weight rows against one activation row. */
    static void dot4x1(MemorySegment w, long b0, long b1, long b2, long b3, int from, int to, float[] xq,
                       int xBase, float[] sums, int sumOffset, int sumStride) {
        int s0 = sumOffset, s1 = s0 + sumStride, s2 = s1 + sumStride, s3 = s2 + sumStride;
        FloatVector c00 = FloatVector.fromArray(F, sums, s0);
        FloatVector c10 = FloatVector.fromArray(F, sums, s1);
        FloatVector c20 = FloatVector.fromArray(F, sums, s2);
        FloatVector c30 = FloatVector.fromArray(F, sums, s3);
        for (int c = from; c < to; c += BLOCK) {
            long off = 2L * c;
            int xi = xBase + c;
            IntVector p0 = IntVector.fromMemorySegment(I, w, b0 + off, LE);
            IntVector p1 = IntVector.fromMemorySegment(I, w, b1 + off, LE);
            IntVector p2 = IntVector.fromMemorySegment(I, w, b2 + off, LE);
            IntVector p3 = IntVector.fromMemorySegment(I, w, b3 + off, LE);
            FloatVector a0 = p0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector a1 = p1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector a2 = p2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector a3 = p3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector b = FloatVector.fromArray(F, xq, xi);
            c00 = a0.fma(b, c00);
            c10 = a1.fma(b, c10);
            c20 = a2.fma(b, c20);
            c30 = a3.fma(b, c30);
            a0 = p0.and(ODD).reinterpretAsFloats();
            a1 = p1.and(ODD).reinterpretAsFloats();
            a2 = p2.and(ODD).reinterpretAsFloats();
            a3 = p3.and(ODD).reinterpretAsFloats();
            b = FloatVector.fromArray(F, xq, xi + L);
            c00 = a0.fma(b, c00);
            c10 = a1.fma(b, c10);
            c20 = a2.fma(b, c20);
            c30 = a3.fma(b, c30);
        }
        c00.intoArray(sums, s0);
        c10.intoArray(sums, s1);
        c20.intoArray(sums, s2);
        c30.intoArray(sums, s3);
    }

    /** The even columns of a block of bf16 pairs, as floats. */
    static FloatVector even(IntVector pair) {
        return pair.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    /** The odd columns of a block of bf16 pairs, as floats. */
    static FloatVector odd(IntVector pair) {
        return pair.and(0xffff0000).reinterpretAsFloats();
    }
}
