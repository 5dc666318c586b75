//! Dhrystone 2.1 (Reinhold P. Weicker, 1988), ported to Rust.
//!
//! The port keeps the original's data and control flow statement by statement: the record type
//! with its `Ptr_Comp` chain, the global variables, `Proc_1`..`Proc_8`, `Func_1`..`Func_3`, the
//! string assignments and the `strcmp`. One unit of work is one pass of the main loop (one
//! "Dhrystone"); DMIPS is loops per second over 1757, the VAX 11/780's score.
//!
//! How C becomes Rust here:
//! - Pointers to records are indices into a two-record heap (the original's two `malloc`s);
//!   [`NULL`] stands for `Null`. A pointer to a record's `Ptr_Comp` field is the record's index.
//! - The record's variant union keeps only `var_1`, the only variant Dhrystone ever uses.
//! - Globals live in one [`Globals`] value; a procedure of the second file that reads or writes a
//!   global receives it as an explicit reference (`int_glob`, `ch_1_glob`).
//! - The original compiles its two files separately, so the main loop cannot see into `Proc_6`..
//!   `Proc_8` and `Func_1`..`Func_3`. Here the loop reaches them through a table of function
//!   pointers that passes through `black_box` once before the clock starts: they can be neither
//!   inlined nor specialised for the constant arguments the loop passes (they are also
//!   `#[inline(never)]`). `Proc_1`..`Proc_5`, in the main file, may be inlined as a C compiler
//!   would.
//! - The initial state also passes through `black_box`, and the final state through it again
//!   before the original's expected values are checked, so the loop cannot be folded.

use std::hint::black_box;
use std::time::Instant;

use crate::{Outcome, Params, WorkloadError};

/// Dhrystones per second of the VAX 11/780, the 1 MIPS reference: DMIPS = loops/s / 1757.
const VAX_DHRYSTONES_PER_SECOND: f64 = 1757.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Enumeration {
    Ident1,
    Ident2,
    Ident3,
    Ident4,
    Ident5,
}
use Enumeration::*;

/// `Str_30`: 30 characters and the terminating NUL.
type Str30 = [u8; 31];
type Arr1Dim = [i32; 50];
type Arr2Dim = [[i32; 50]; 50];
/// `Rec_Pointer`: an index into the record heap.
type RecPointer = usize;

/// The null `Rec_Pointer`.
const NULL: RecPointer = usize::MAX;

const SOME_STRING: &Str30 = b"DHRYSTONE PROGRAM, SOME STRING\0";
const FIRST_STRING: &Str30 = b"DHRYSTONE PROGRAM, 1'ST STRING\0";
const SECOND_STRING: &Str30 = b"DHRYSTONE PROGRAM, 2'ND STRING\0";
const THIRD_STRING: &Str30 = b"DHRYSTONE PROGRAM, 3'RD STRING\0";

/// `Rec_Type` with its `var_1` variant.
#[derive(Debug, Clone, Copy)]
struct Record {
    ptr_comp: RecPointer,
    discr: Enumeration,
    enum_comp: Enumeration,
    int_comp: i32,
    str_comp: Str30,
}

const EMPTY_RECORD: Record = Record {
    ptr_comp: NULL,
    discr: Ident1,
    enum_comp: Ident1,
    int_comp: 0,
    str_comp: [0; 31],
};

/// The original's global variables, the record heap apart.
struct Globals {
    ptr_glob: RecPointer,
    next_ptr_glob: RecPointer,
    int_glob: i32,
    bool_glob: bool,
    ch_1_glob: u8,
    ch_2_glob: u8,
    arr_1_glob: Arr1Dim,
    arr_2_glob: Arr2Dim,
}

/// The procedures of the original's second file, as the main loop sees them.
#[derive(Clone, Copy)]
struct SecondFile {
    proc_6: fn(Enumeration, &mut Enumeration, &i32),
    proc_7: fn(i32, i32, &mut i32),
    proc_8: fn(&mut Arr1Dim, &mut Arr2Dim, i32, i32, &mut i32),
    func_1: fn(u8, u8, &mut u8) -> Enumeration,
    func_2: fn(&Str30, &Str30, &mut i32, &mut u8) -> bool,
}

const SECOND_FILE: SecondFile = SecondFile {
    proc_6,
    proc_7,
    proc_8,
    func_1,
    func_2,
};

/// The main program's locals after the last loop, and the globals, for the final checks.
struct FinalState {
    globals: Box<Globals>,
    heap: [Record; 2],
    int_1_loc: i32,
    int_2_loc: i32,
    int_3_loc: i32,
    enum_loc: Enumeration,
    str_1_loc: Str30,
    str_2_loc: Str30,
}

/// `cpu.dhrystone`: one iteration is one Dhrystone loop. Extras: `dmips`.
pub(super) fn run(_params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let loops = super::check_iterations(iterations)?;
    let (elapsed, state) = dhrystone(loops);
    check(&state, loops).map_err(|e| WorkloadError::Failed(format!("Dhrystone check: {e}")))?;
    let mut out = Outcome::new(loops as f64, elapsed);
    let loops_per_s = loops as f64 / elapsed.as_secs_f64().max(1e-9);
    out.extras
        .insert("dmips".into(), loops_per_s / VAX_DHRYSTONES_PER_SECOND);
    Ok(out)
}

/// The original `main`: set-up, then `number_of_runs` timed loops.
fn dhrystone(number_of_runs: u64) -> (std::time::Duration, FinalState) {
    let mut glob = Box::new(Globals {
        ptr_glob: NULL,
        next_ptr_glob: NULL,
        int_glob: 0,
        bool_glob: false,
        ch_1_glob: 0,
        ch_2_glob: 0,
        arr_1_glob: [0; 50],
        arr_2_glob: [[0; 50]; 50],
    });
    let mut heap = [EMPTY_RECORD; 2];

    glob.next_ptr_glob = 1;
    glob.ptr_glob = 0;

    let p = glob.ptr_glob;
    heap[p].ptr_comp = glob.next_ptr_glob;
    heap[p].discr = Ident1;
    heap[p].enum_comp = Ident3;
    heap[p].int_comp = 40;
    heap[p].str_comp = *SOME_STRING;
    let mut str_1_loc: Str30 = *FIRST_STRING;

    glob.arr_2_glob[8][7] = 10;

    let mut int_1_loc: i32 = 0;
    let mut int_2_loc: i32 = 0;
    let mut int_3_loc: i32 = 0;
    let mut enum_loc = Ident1;
    let mut str_2_loc: Str30 = [0; 31];

    // The optimiser must not know the starting state, the loop count or the second file.
    black_box(&mut *glob);
    black_box(&mut heap);
    black_box(&mut str_1_loc);
    let number_of_runs = black_box(number_of_runs);
    let file_2 = black_box(SECOND_FILE);

    let start = Instant::now();
    let mut run_index: u64 = 1;
    while run_index <= number_of_runs {
        proc_5(&mut glob);
        proc_4(&mut glob);
        // Ch_1_Glob == 'A', Ch_2_Glob == 'B', Bool_Glob == true
        int_1_loc = 2;
        int_2_loc = 3;
        str_2_loc = *SECOND_STRING;
        enum_loc = Ident2;
        glob.bool_glob = !(file_2.func_2)(
            &str_1_loc,
            &str_2_loc,
            &mut glob.int_glob,
            &mut glob.ch_1_glob,
        );
        // Bool_Glob == true
        while int_1_loc < int_2_loc {
            // loop body executed once
            int_3_loc = 5 * int_1_loc - int_2_loc;
            // Int_3_Loc == 7
            (file_2.proc_7)(int_1_loc, int_2_loc, &mut int_3_loc);
            // Int_3_Loc == 7
            int_1_loc += 1;
        }
        // Int_1_Loc == 3, Int_2_Loc == 3, Int_3_Loc == 7
        let g = &mut *glob;
        (file_2.proc_8)(
            &mut g.arr_1_glob,
            &mut g.arr_2_glob,
            int_1_loc,
            int_3_loc,
            &mut g.int_glob,
        );
        // Int_Glob == 5
        let ptr_glob = glob.ptr_glob;
        proc_1(&mut glob, &mut heap, &file_2, ptr_glob);
        let mut ch_index = b'A';
        while ch_index <= glob.ch_2_glob {
            // loop body executed twice
            if enum_loc == (file_2.func_1)(ch_index, b'C', &mut glob.ch_1_glob) {
                // then, not executed
                (file_2.proc_6)(Ident1, &mut enum_loc, &glob.int_glob);
                str_2_loc = *THIRD_STRING;
                int_2_loc = run_index as i32;
                glob.int_glob = run_index as i32;
            }
            ch_index += 1;
        }
        // Int_1_Loc == 3, Int_2_Loc == 3, Int_3_Loc == 7
        int_2_loc *= int_1_loc;
        int_1_loc = int_2_loc / int_3_loc;
        int_2_loc = 7 * (int_2_loc - int_3_loc) - int_1_loc;
        // Int_1_Loc == 1, Int_2_Loc == 13, Int_3_Loc == 7
        proc_2(&mut int_1_loc, &glob);
        // Int_1_Loc == 5
        run_index += 1;
    }
    let elapsed = start.elapsed();

    let state = black_box(FinalState {
        globals: glob,
        heap,
        int_1_loc,
        int_2_loc,
        int_3_loc,
        enum_loc,
        str_1_loc,
        str_2_loc,
    });
    (elapsed, state)
}

/// The values the original prints after the loop "should be", as hard checks.
fn check(s: &FinalState, loops: u64) -> Result<(), String> {
    fn expect<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
        if got == want {
            Ok(())
        } else {
            Err(format!("{what} is {got:?}, should be {want:?}"))
        }
    }
    let g = &s.globals;
    expect("Int_Glob", g.int_glob, 5)?;
    expect("Bool_Glob", g.bool_glob, true)?;
    expect("Ch_1_Glob", g.ch_1_glob, b'A')?;
    expect("Ch_2_Glob", g.ch_2_glob, b'B')?;
    expect("Arr_1_Glob[8]", g.arr_1_glob[8], 7)?;
    // An int in the original: it wraps as the C does.
    expect(
        "Arr_2_Glob[8][7]",
        g.arr_2_glob[8][7],
        loops.wrapping_add(10) as i32,
    )?;
    let (p, n) = (&s.heap[g.ptr_glob], &s.heap[g.next_ptr_glob]);
    expect("Ptr_Glob->Ptr_Comp", p.ptr_comp, g.next_ptr_glob)?;
    expect("Ptr_Glob->Discr", p.discr, Ident1)?;
    expect("Ptr_Glob->Enum_Comp", p.enum_comp, Ident3)?;
    expect("Ptr_Glob->Int_Comp", p.int_comp, 17)?;
    expect("Ptr_Glob->Str_Comp", &p.str_comp, SOME_STRING)?;
    expect("Next_Ptr_Glob->Ptr_Comp", n.ptr_comp, g.next_ptr_glob)?;
    expect("Next_Ptr_Glob->Discr", n.discr, Ident1)?;
    expect("Next_Ptr_Glob->Enum_Comp", n.enum_comp, Ident2)?;
    expect("Next_Ptr_Glob->Int_Comp", n.int_comp, 18)?;
    expect("Next_Ptr_Glob->Str_Comp", &n.str_comp, SOME_STRING)?;
    expect("Int_1_Loc", s.int_1_loc, 5)?;
    expect("Int_2_Loc", s.int_2_loc, 13)?;
    expect("Int_3_Loc", s.int_3_loc, 7)?;
    expect("Enum_Loc", s.enum_loc, Ident2)?;
    expect("Str_1_Loc", &s.str_1_loc, FIRST_STRING)?;
    expect("Str_2_Loc", &s.str_2_loc, SECOND_STRING)?;
    Ok(())
}

// ----- The original's first file: Proc_1 .. Proc_5 -----------------------------------------

fn proc_1(g: &mut Globals, heap: &mut [Record; 2], f2: &SecondFile, ptr_val_par: RecPointer) {
    // A local initialised with Ptr_Val_Par->Ptr_Comp (== Next_Ptr_Glob), like "rename" in Ada
    // or "with" in Pascal.
    let next_record = heap[ptr_val_par].ptr_comp;
    heap[heap[ptr_val_par].ptr_comp] = heap[g.ptr_glob];
    heap[ptr_val_par].int_comp = 5;
    heap[next_record].int_comp = heap[ptr_val_par].int_comp;
    heap[next_record].ptr_comp = heap[ptr_val_par].ptr_comp;
    proc_3(g, heap, f2, next_record);
    // Ptr_Val_Par->Ptr_Comp->Ptr_Comp == Ptr_Glob->Ptr_Comp
    if heap[next_record].discr == Ident1 {
        // then, executed
        heap[next_record].int_comp = 6;
        let enum_val = heap[ptr_val_par].enum_comp;
        (f2.proc_6)(enum_val, &mut heap[next_record].enum_comp, &g.int_glob);
        heap[next_record].ptr_comp = heap[g.ptr_glob].ptr_comp;
        let int_val = heap[next_record].int_comp;
        (f2.proc_7)(int_val, 10, &mut heap[next_record].int_comp);
    } else {
        // not executed
        heap[ptr_val_par] = heap[heap[ptr_val_par].ptr_comp];
    }
}

/// Executed once: `*int_par_ref` goes from 1 to 5.
fn proc_2(int_par_ref: &mut i32, g: &Globals) {
    let mut int_loc = *int_par_ref + 10;
    // Uninitialised in the original; the first pass always sets it.
    let mut enum_loc = Ident5;
    loop {
        // executed once
        if g.ch_1_glob == b'A' {
            // then, executed
            int_loc -= 1;
            *int_par_ref = int_loc - g.int_glob;
            enum_loc = Ident1;
        }
        if enum_loc == Ident1 {
            // true
            break;
        }
    }
}

/// `ptr_ref_par` is the record whose `Ptr_Comp` the original's `Rec_Pointer *` points to.
fn proc_3(g: &mut Globals, heap: &mut [Record; 2], f2: &SecondFile, ptr_ref_par: RecPointer) {
    if g.ptr_glob != NULL {
        // then, executed
        heap[ptr_ref_par].ptr_comp = heap[g.ptr_glob].ptr_comp;
    }
    (f2.proc_7)(10, g.int_glob, &mut heap[g.ptr_glob].int_comp);
}

fn proc_4(g: &mut Globals) {
    let bool_loc = g.ch_1_glob == b'A';
    g.bool_glob |= bool_loc;
    g.ch_2_glob = b'B';
}

fn proc_5(g: &mut Globals) {
    g.ch_1_glob = b'A';
    g.bool_glob = false;
}

// ----- The original's second file: Proc_6 .. Proc_8, Func_1 .. Func_3 -----------------------

#[inline(never)]
fn proc_6(enum_val_par: Enumeration, enum_ref_par: &mut Enumeration, int_glob: &i32) {
    *enum_ref_par = enum_val_par;
    if !func_3(enum_val_par) {
        // then, not executed
        *enum_ref_par = Ident4;
    }
    match enum_val_par {
        Ident1 => *enum_ref_par = Ident1,
        Ident2 => {
            *enum_ref_par = if *int_glob > 100 { Ident1 } else { Ident4 };
        }
        Ident3 => *enum_ref_par = Ident2, // executed
        Ident4 => {}
        Ident5 => *enum_ref_par = Ident3,
    }
}

/// Executed three times per loop: (2, 3) -> 7, (10, 5) -> 17, (6, 10) -> 18.
#[inline(never)]
fn proc_7(int_1_par_val: i32, int_2_par_val: i32, int_par_ref: &mut i32) {
    let int_loc = int_1_par_val + 2;
    *int_par_ref = int_2_par_val + int_loc;
}

#[inline(never)]
fn proc_8(
    arr_1_par_ref: &mut Arr1Dim,
    arr_2_par_ref: &mut Arr2Dim,
    int_1_par_val: i32,
    int_2_par_val: i32,
    int_glob: &mut i32,
) {
    let int_loc = (int_1_par_val + 5) as usize;
    arr_1_par_ref[int_loc] = int_2_par_val;
    arr_1_par_ref[int_loc + 1] = arr_1_par_ref[int_loc];
    arr_1_par_ref[int_loc + 30] = int_loc as i32;
    #[allow(clippy::needless_range_loop)] // the original's loop, kept as written
    for int_index in int_loc..=int_loc + 1 {
        arr_2_par_ref[int_loc][int_index] = int_loc as i32;
    }
    arr_2_par_ref[int_loc][int_loc - 1] = arr_2_par_ref[int_loc][int_loc - 1].wrapping_add(1);
    arr_2_par_ref[int_loc + 20][int_loc] = arr_1_par_ref[int_loc];
    *int_glob = 5;
}

/// Executed three times per loop: ('R', 'Y') from `Func_2`, then ('A', 'C') and ('B', 'C');
/// always Ident1.
#[inline(never)]
fn func_1(ch_1_par_val: u8, ch_2_par_val: u8, ch_1_glob: &mut u8) -> Enumeration {
    let ch_1_loc = ch_1_par_val;
    let ch_2_loc = ch_1_loc;
    if ch_2_loc != ch_2_par_val {
        // then, executed
        Ident1
    } else {
        // not executed
        *ch_1_glob = ch_1_loc;
        Ident2
    }
}

/// Executed once; returns false for the two strings the loop passes.
#[inline(never)]
fn func_2(
    str_1_par_ref: &Str30,
    str_2_par_ref: &Str30,
    int_glob: &mut i32,
    ch_1_glob: &mut u8,
) -> bool {
    let mut int_loc: i32 = 2;
    // Uninitialised in the original; the loop below always sets it before leaving.
    let mut ch_loc: u8 = 0;
    while int_loc <= 2 {
        // loop body executed once
        let i = int_loc as usize;
        if func_1(str_1_par_ref[i], str_2_par_ref[i + 1], ch_1_glob) == Ident1 {
            // then, executed
            ch_loc = b'A';
            int_loc += 1;
        }
    }
    if (b'W'..b'Z').contains(&ch_loc) {
        // then, not executed
        int_loc = 7;
    }
    if ch_loc == b'R' {
        // then, not executed
        true
    } else if strcmp(str_1_par_ref, str_2_par_ref) > 0 {
        // then, not executed
        int_loc += 7;
        *int_glob = int_loc;
        true
    } else {
        // executed
        false
    }
}

#[inline(never)]
fn func_3(enum_par_val: Enumeration) -> bool {
    let enum_loc = enum_par_val;
    // Ident3 (executed) is true, anything else false
    enum_loc == Ident3
}

/// C's `strcmp` on NUL-terminated strings, byte by byte.
#[inline(never)]
fn strcmp(s1: &Str30, s2: &Str30) -> i32 {
    let mut i = 0;
    loop {
        let (a, b) = (s1[i], s2[i]);
        if a != b || a == 0 {
            return i32::from(a) - i32::from(b);
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_values_hold_for_several_loop_counts() {
        for loops in [1, 2, 3, 100, 12_345] {
            let (_, state) = dhrystone(loops);
            check(&state, loops).unwrap();
        }
    }

    #[test]
    fn check_notices_a_wrong_value() {
        let (_, mut state) = dhrystone(5);
        state.globals.arr_2_glob[8][7] += 1;
        assert!(check(&state, 5).unwrap_err().contains("Arr_2_Glob"));
        let (_, mut state) = dhrystone(5);
        state.str_2_loc = *THIRD_STRING;
        assert!(check(&state, 5).unwrap_err().contains("Str_2_Loc"));
    }

    #[test]
    fn strcmp_orders_like_c() {
        assert!(strcmp(FIRST_STRING, SECOND_STRING) < 0);
        assert!(strcmp(SECOND_STRING, FIRST_STRING) > 0);
        assert_eq!(strcmp(SOME_STRING, SOME_STRING), 0);
    }
}
