//! CPU metering and the wall-clock deadline's stopping points, compiled into every
//! module: the region-metering middleware the engines push onto their compiler
//! configuration and the fingerprint that keys cached artifacts. The per-call budget and
//! the deadline are set and enforced by `src/abi/enforce.rs` through the two globals this
//! middleware adds.
//!
//! # Regions
//!
//! wasmer's own `Metering` charges at every basic block, which costs about +50 % on
//! branchy code. This middleware charges only where code can repeat or leave the
//! function ("charge points"):
//!
//! - before `loop` (the path up to the loop, once per entry);
//! - before every branch to a loop label (`br`, `br_if`, `br_table` with a loop target);
//! - before `return`, branches to the function label, tail calls and the final `end`;
//! - before every call (`call`, `call_indirect`, `call_ref`).
//!
//! Forward branches (to `block`/`if` ends) are not charge points. While streaming the
//! operators the middleware tracks the *longest* path cost since the previous charge point
//! (a max at every join) and charges that bound, as an immediate, at the next one, plus a
//! fixed cost for the charge point itself. Costs are [`Weights`] per compiler, in points
//! of [`POINTS_PER_SECOND`]: per operator on that path, per charge point, and per call to
//! an import (more for host functions that do work on the host's side).
//!
//! Each charge is `used += cost; if used > limit { trap }` (signed). The guest never writes
//! `limit`: the watchdog of `src/abi/enforce.rs` stops a call past its deadline by storing
//! `limit = 0`, and the guest traps at its next charge point. Engines without metering
//! compile the same code (the deadline needs the charge points) and run with an unlimited
//! budget. A lighter deadline-only check (`limit == 0`, without the store to `used`) is
//! not enough: with no store in a loop, cranelift keeps `limit` in a register, and a
//! `loop br 0` was never stopped.
//!
//! Charge points at loops and exits are checked. A charge before a call is checked only
//! when some path from the function's entry to it has not passed a checked charge point
//! yet (so the first charge point of every invocation is checked); otherwise it only adds
//! (`used += cost`, no comparison). That saves the check on most calls of branchy code
//! (JSON parsing: +12.6 % / +10.7 % over bare wasmer on singlepass / cranelift instead
//! of +17 % / +16 % with every call checked).
//!
//! # Soundness (points charged bound the work done)
//!
//! Remove the back-edges (branches to loop labels) and a function's control flow is a
//! DAG, because wasm only branches backwards to loops. Every DAG sink that is not a trap
//! is a charge point, and the cost charged at a point is the maximum over the DAG paths
//! from the previous charge points (induction over the operator stream: fallthrough adds
//! the operator's cost, an `else` arm starts from its `if`, a block's or if's end takes
//! the max of the fallthrough and every forward branch to it, nothing falls through an
//! unconditional transfer). Every call is a charge point, so a callee's regions never mix
//! with its caller's, and every region is added to `used` when it ends, before anything
//! else runs: operators executed <= `used` + the region in progress.
//!
//! Bound on the overrun: let C be the last check that passed (`used <= limit` then).
//! After C, no loop is entered or repeated and no function returns (those charges are
//! checked, and the next check is the one that fails). So execution only moves forward
//! through C's function F and descends into calls. The unchecked adds after C are
//! therefore all in F's one forward path after C (a callee's first charge point is
//! checked, and it is the failing one). Hence, at any moment of a call: operators
//! executed (in points) <= budget + one forward path of one function + one region of the
//! function it called, both bounded by the size of the functions' code.
//! `a_budget_is_never_overrun_by_more_than_one_region` and
//! `a_call_chain_is_stopped_within_one_region_per_check` (`src/abi/enforce.rs`) check it
//! on both compilers. Host functions' own work is outside wasm and costs the fixed import
//! weights.
//!
//! Control flow this analysis does not model (exception handling, `br_on_*`) is refused:
//! the compile fails rather than under-charge.

use std::fmt;
use std::sync::Arc;
use std::sync::{Mutex, PoisonError};

use wasmer::sys::wasmparser::{BlockType, Operator};
use wasmer::sys::{FunctionMiddleware, MiddlewareError, MiddlewareReaderState, ModuleMiddleware};
use wasmer::{
    ExportIndex, GlobalInit, GlobalType, LocalFunctionIndex, ModuleInfo, Mutability, Type,
};
use wasmer_types::ImportIndex;

use crate::engine::Compiler;
use crate::limits::{DEFAULT_CPU_TIME, POINTS_PER_SECOND};

/// Version of the metering scheme (charge points, check sequence, operator costs). Part of
/// the engine settings fingerprint ([`metering_fingerprint`]): change it whenever the
/// generated code changes, so cached artifacts compiled with the old scheme are not reused.
pub const METERING_SCHEME: &str = "region3";

/// Export name of the global holding the points used by the running call (i64; the guest
/// reads and writes it, the host resets it before each call).
pub const EXPORT_USED: &str = "tark_meter_used";

/// Export name of the global holding the running call's limit in points (i64; the guest
/// only reads it; the host sets it before each call, the watchdog stores 0 into it).
pub const EXPORT_LIMIT: &str = "tark_meter_limit";

/// What each metered thing costs, in points (picoseconds of guest execution on the
/// reference machine, see [`POINTS_PER_SECOND`]). Compiled into the code, so part of the
/// engine fingerprint. Calibrated per compiler on the 2-vCPU AMD EPYC development machine
/// (thread CPU time, best of 3, unit weights, then checked with these): the cheapest code
/// per point is a loop of nothing (`loop br 0`: one operator and one charge per
/// iteration, 2.2 ns on singlepass and 1.2 ns on cranelift); an 8-operator tight loop
/// takes 1.25 / 1.9 ns per iteration, recursion (`fib`) about 0.35 ns per operator
/// charges included. A host call measured 0.4 µs (`log.debug` below the level) and
/// 1.4 µs (`storage.get`), 4.8 µs (`storage.set`), 0.6 µs (`log.info` through a logger)
/// in the debug build the tests run in; release builds are faster, so they are charged
/// more than they cost. Code whose operators are slower than these (dependent 64-bit
/// divisions on singlepass, memory accesses that miss the caches) can run longer per
/// point; the wall-clock limit bounds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights {
    /// Points per wasm operator on the longest path of a region.
    pub op: u64,
    /// Points per charge point passed (the check itself is about ten instructions).
    pub charge: u64,
    /// Extra points per call to an imported (host) function: crossing into the host and
    /// back, plus a cheap host function (`log.*` below the level, `env.get`).
    pub import_call: u64,
    /// Extra points per call to a host function that does work on the host's side
    /// (modules `*storage`, `*log`, `*fs`: maps, files, the host's logger), on top of
    /// `import_call`. Blocking host functions (HTTP, WebSockets) cost only `import_call`:
    /// time spent waiting is the wall-clock limit's business, not the CPU budget's.
    pub host_work: u64,
}

impl Weights {
    /// The calibrated weights of `compiler`.
    pub fn of(compiler: Compiler) -> Weights {
        match compiler {
            Compiler::Singlepass => Weights {
                op: 200,
                charge: 2_000,
                import_call: 400_000,
                host_work: 6_000_000,
            },
            Compiler::Cranelift => Weights {
                op: 200,
                charge: 1_000,
                import_call: 400_000,
                host_work: 6_000_000,
            },
        }
    }
}

/// Largest limit the host stores (budgets above it, `u64::MAX` included, mean "about
/// unlimited"): keeps `used + cost` and `used - limit` far from overflowing.
pub const MAX_LIMIT: u64 = 1 << 62;

/// Everything about metering that is compiled into the code, for cache keys:
/// `region3/200/2000/400000/6000000:5000000000000` with metering (scheme, weights,
/// initial points), `off:region3/...` without (the deadline's charge points are
/// compiled in either way).
pub fn metering_fingerprint(compiler: Compiler, metered: bool) -> String {
    let w = Weights::of(compiler);
    let scheme = format!(
        "{METERING_SCHEME}/{}/{}/{}/{}",
        w.op, w.charge, w.import_call, w.host_work
    );
    if metered {
        format!("{scheme}:{INITIAL_POINTS}")
    } else {
        format!("off:{scheme}")
    }
}

/// The limit global's initial value, before the host sets the plugin's budget: it bounds
/// the module's start function. Baked into the compiled code, hence a constant (tark's
/// plugins have no start function).
pub const INITIAL_POINTS: u64 = DEFAULT_CPU_TIME.as_secs() * POINTS_PER_SECOND;

/// The middleware to push onto a compiler configuration (with or without metering: see
/// the module documentation).
pub fn metering_middleware(compiler: Compiler) -> Arc<dyn ModuleMiddleware> {
    Arc::new(RegionMetering {
        current: Mutex::new(None),
        weights: Weights::of(compiler),
    })
}

/// Global indexes of the module being compiled, and the extra cost of a call to each of
/// its imported functions.
#[derive(Clone, Debug)]
struct ModuleState {
    used: u32,
    limit: u32,
    import_costs: Arc<[u64]>,
}

/// The region-metering module middleware. One value serves every module an engine
/// compiles: the module's global indexes are recorded in `transform_module_info` and
/// handed to that module's function middlewares. That is sound because wasmer 7.4
/// compiles a module entirely under the engine's inner lock (`Artifact::new` holds
/// `engine.inner_mut()` from module transform to the last function), so the function
/// middlewares of one compilation never see another module's state.
pub struct RegionMetering {
    current: Mutex<Option<ModuleState>>,
    weights: Weights,
}

impl fmt::Debug for RegionMetering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegionMetering")
            .field("scheme", &METERING_SCHEME)
            .field("weights", &self.weights)
            .finish()
    }
}

impl ModuleMiddleware for RegionMetering {
    fn generate_function_middleware<'a>(
        &self,
        _local_function_index: LocalFunctionIndex,
    ) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        let state = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Box::new(FunctionRegionMetering {
            // None cannot happen (wasmer transforms the module first); `feed` then fails
            // the compile rather than produce unmetered code.
            state,
            weights: self.weights,
            stack: vec![Frame::new(Kind::Func, Some((0, false)))],
            acc: Some((0, false)),
        })
    }

    fn transform_module_info(&self, info: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        if info.exports.contains_key(EXPORT_USED) || info.exports.contains_key(EXPORT_LIMIT) {
            return Err(MiddlewareError::new(
                "metering",
                "the module already exports a metering global name",
            ));
        }
        let used = info
            .globals
            .push(GlobalType::new(Type::I64, Mutability::Var));
        info.global_initializers.push(GlobalInit::I64Const(0));
        info.exports
            .insert(EXPORT_USED.to_string(), ExportIndex::Global(used));
        let limit = info
            .globals
            .push(GlobalType::new(Type::I64, Mutability::Var));
        let initial = i64::try_from(INITIAL_POINTS.min(MAX_LIMIT)).unwrap_or(i64::MAX);
        info.global_initializers.push(GlobalInit::I64Const(initial));
        info.exports
            .insert(EXPORT_LIMIT.to_string(), ExportIndex::Global(limit));
        let w = self.weights;
        let mut import_costs = vec![w.import_call; info.num_imported_functions];
        for (key, index) in &info.imports {
            if let ImportIndex::Function(f) = index {
                if let Some(cost) = import_costs.get_mut(f.as_u32() as usize) {
                    if ["storage", "log", "fs"]
                        .iter()
                        .any(|m| key.module.ends_with(m))
                    {
                        *cost = w.import_call.saturating_add(w.host_work);
                    }
                }
            }
        }
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(ModuleState {
            used: used.as_u32(),
            limit: limit.as_u32(),
            import_costs: import_costs.into(),
        });
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Func,
    Block,
    Loop,
    If,
}

/// One open control frame and the path costs that join at its end.
#[derive(Debug)]
struct Frame {
    kind: Kind,
    /// Cost when the `if` was entered (start of the else arm).
    at_if: Acc,
    /// Cost at the end of the then-arm (after `else`).
    then_end: Acc,
    has_else: bool,
    /// Max cost of the forward branches to this frame's end label.
    end_acc: Acc,
}

/// The state of the paths reaching an operator: the longest cost since the last charge
/// point, and whether every path since the function's entry passed a checked charge
/// point. None stands for "unreachable".
type Acc = Option<(u64, bool)>;

impl Frame {
    fn new(kind: Kind, at_if: Acc) -> Self {
        Frame {
            kind,
            at_if,
            then_end: None,
            has_else: false,
            end_acc: None,
        }
    }
}

/// Paths joining: the larger cost, checked only if both are; `None` is "unreachable".
fn max_cost(a: Acc, b: Acc) -> Acc {
    match (a, b) {
        (Some(x), Some(y)) => Some((x.0.max(y.0), x.1 && y.1)),
        (x, None) => x,
        (None, y) => y,
    }
}

struct FunctionRegionMetering {
    state: Option<ModuleState>,
    weights: Weights,
    stack: Vec<Frame>,
    /// Longest path cost since the last charge point; None when unreachable.
    acc: Acc,
}

impl fmt::Debug for FunctionRegionMetering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionRegionMetering").finish()
    }
}

fn refused(what: &str) -> MiddlewareError {
    MiddlewareError::new("metering", format!("unsupported operator {what}"))
}

impl FunctionRegionMetering {
    /// Emit the charge of the accumulated cost (if reachable and non-zero) and reset it.
    fn charge(&mut self, state: &mut MiddlewareReaderState<'_>, st: &ModuleState) {
        let cost = match self.acc {
            Some((c, _)) if c > 0 => c.saturating_add(self.weights.charge),
            _ => return,
        };
        // A region costs at most (operators of one function) x (import call cost): far
        // below 2^50 (1126 s), and the cap keeps `used` (<= limit <= 2^62) from
        // overflowing.
        let cost = i64::try_from(cost.min(1 << 50)).unwrap_or(1 << 50);
        // Update, then check: `used += cost; if used > limit { trap }`. The trap leaves
        // `used > limit`, which tells the host "out of points" from a guest
        // `unreachable`. Measured against "check, then update" (prototype, /work/proto
        // REPORT.md): JSON 1 MiB +12.8 % / +9.8 % instead of +13.3 % / +12.1 %
        // (singlepass / cranelift, with the call rule below), and cranelift's
        // `loop br 0` at 1.2 ns per iteration instead of 2.3 ns.
        state.extend([
            Operator::GlobalGet {
                global_index: st.used,
            },
            Operator::I64Const { value: cost },
            Operator::I64Add,
            Operator::GlobalSet {
                global_index: st.used,
            },
            Operator::GlobalGet {
                global_index: st.used,
            },
            Operator::GlobalGet {
                global_index: st.limit,
            },
            Operator::I64GtS,
            Operator::If {
                blockty: BlockType::Empty,
            },
            Operator::Unreachable,
            Operator::End,
        ]);
        self.acc = Some((0, true));
    }

    /// Add the accumulated cost without a check.
    fn add(&mut self, state: &mut MiddlewareReaderState<'_>, st: &ModuleState) {
        let (cost, checked) = match self.acc {
            Some((c, checked)) if c > 0 => (c.saturating_add(self.weights.charge), checked),
            _ => return,
        };
        let cost = i64::try_from(cost.min(1 << 50)).unwrap_or(1 << 50);
        state.extend([
            Operator::GlobalGet {
                global_index: st.used,
            },
            Operator::I64Const { value: cost },
            Operator::I64Add,
            Operator::GlobalSet {
                global_index: st.used,
            },
        ]);
        self.acc = Some((0, checked));
    }

    fn target(&mut self, depth: u32) -> Result<&mut Frame, MiddlewareError> {
        let n = self.stack.len();
        n.checked_sub(1 + depth as usize)
            .and_then(|i| self.stack.get_mut(i))
            .ok_or_else(|| MiddlewareError::new("metering", "branch depth out of range"))
    }

    /// Is label `depth` a charge point (a loop header or the function exit)?
    fn is_charged_label(&self, depth: u32) -> bool {
        let n = self.stack.len();
        match n
            .checked_sub(1 + depth as usize)
            .and_then(|i| self.stack.get(i))
        {
            Some(f) => matches!(f.kind, Kind::Loop | Kind::Func),
            None => true,
        }
    }

    /// A branch to `depth`: charged if it is a back-edge or an exit, else its cost joins
    /// the target's end.
    fn branch(
        &mut self,
        depth: u32,
        state: &mut MiddlewareReaderState<'_>,
        st: &ModuleState,
    ) -> Result<(), MiddlewareError> {
        if self.is_charged_label(depth) {
            self.charge(state, st);
        } else {
            let acc = self.acc;
            let f = self.target(depth)?;
            f.end_acc = max_cost(f.end_acc, acc);
        }
        Ok(())
    }
}

impl<'a> FunctionMiddleware<'a> for FunctionRegionMetering {
    fn feed(
        &mut self,
        op: Operator<'a>,
        state: &mut MiddlewareReaderState<'a>,
    ) -> Result<(), MiddlewareError> {
        let st = self
            .state
            .clone()
            .ok_or_else(|| MiddlewareError::new("metering", "no metering state for this module"))?;
        let st = &st;
        // Cost of this operator, plus the host-call surcharge.
        let mut cost = self.weights.op;
        if let Operator::Call { function_index } = &op {
            if let Some(extra) = st.import_costs.get(*function_index as usize) {
                cost = cost.saturating_add(*extra);
            }
        }
        self.acc = self.acc.map(|(a, c)| (a.saturating_add(cost), c));

        match &op {
            Operator::Block { .. } => self.stack.push(Frame::new(Kind::Block, None)),
            Operator::Loop { .. } => {
                // Pay for the path up to here once on entry, so that the back-edges
                // charge only the loop's own paths.
                self.charge(state, st);
                self.stack.push(Frame::new(Kind::Loop, None));
            }
            Operator::If { .. } => self.stack.push(Frame::new(Kind::If, self.acc)),
            Operator::Else => {
                let acc = self.acc;
                let f = self.target(0)?;
                if f.kind != Kind::If {
                    return Err(refused("else outside if"));
                }
                f.then_end = acc;
                f.has_else = true;
                self.acc = f.at_if;
            }
            Operator::End => {
                let f = self
                    .stack
                    .pop()
                    .ok_or_else(|| MiddlewareError::new("metering", "unbalanced end"))?;
                match f.kind {
                    Kind::Func => {
                        // Fall-through exit (branches to the function label were charged
                        // where they branch).
                        self.charge(state, st);
                        self.acc = None;
                    }
                    Kind::Block => self.acc = max_cost(self.acc, f.end_acc),
                    Kind::Loop => {}
                    Kind::If => {
                        let other = if f.has_else { f.then_end } else { f.at_if };
                        self.acc = max_cost(max_cost(self.acc, other), f.end_acc);
                    }
                }
            }
            Operator::Br { relative_depth } => {
                self.branch(*relative_depth, state, st)?;
                self.acc = None;
            }
            Operator::BrIf { relative_depth } => self.branch(*relative_depth, state, st)?,
            Operator::BrTable { targets } => {
                let mut depths: Vec<u32> = targets
                    .targets()
                    .collect::<Result<_, _>>()
                    .map_err(|e| MiddlewareError::new("metering", e.to_string()))?;
                depths.push(targets.default());
                if depths.iter().any(|d| self.is_charged_label(*d)) {
                    self.charge(state, st);
                }
                let acc = self.acc;
                for d in depths {
                    if !self.is_charged_label(d) {
                        let f = self.target(d)?;
                        f.end_acc = max_cost(f.end_acc, acc);
                    }
                }
                self.acc = None;
            }
            Operator::Return
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::ReturnCallRef { .. } => {
                self.charge(state, st);
                self.acc = None;
            }
            Operator::Unreachable => self.acc = None,
            Operator::Call { .. } | Operator::CallIndirect { .. } | Operator::CallRef { .. } => {
                // Checked when some path from the function's entry has not passed a
                // checked charge point yet (the first charge of every invocation is
                // checked), else a plain add: see "Soundness" above.
                if self.acc.is_some_and(|(_, checked)| checked) {
                    self.add(state, st)
                } else {
                    self.charge(state, st)
                }
            }
            // Control flow this analysis does not model: refuse rather than under-charge.
            Operator::Try { .. }
            | Operator::Catch { .. }
            | Operator::CatchAll
            | Operator::Throw { .. }
            | Operator::ThrowRef
            | Operator::Rethrow { .. }
            | Operator::Delegate { .. }
            | Operator::TryTable { .. }
            | Operator::BrOnNull { .. }
            | Operator::BrOnNonNull { .. }
            | Operator::BrOnCast { .. }
            | Operator::BrOnCastFail { .. } => return Err(refused(&format!("{op:?}"))),
            _ => {}
        }
        state.push_operator(op);
        Ok(())
    }
}
