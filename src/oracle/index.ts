export { type EmuCase, type EmuResult, type Bench, type LoadedCase, prepare, runEmuCase, loadCase, armSite, realBytes, insnLength, CALLEE, COOKIE } from "./emulation.js";
export { checkTrapInvariants, checkUserInt3, checkStrayInt3, type InvariantResult } from "./invariants.js";
export { checkVariant, explainInequivalence, coverageCell, expectedCells, alignClass, ALIGN_CLASSES, type PropertyReport, type CampaignOptions } from "./campaign.js";
export { runRoundTrip, type RoundTripCase, type RoundTripResult } from "./roundtrip.js";
export { checkBadUserFrame, checkBadIret, hasIretFixup, iretFixupKind, IRET_FIXUP_EXPECTS, type IretFixupKind, BAD_IRET_PROPERTY, BAD_IRET_RUNS, type BadFrameResult, type BadFrameOutcome, type BadIretReport, type BadIretOptions } from "./bad-iret.js";
export { checkUserSegments, checkEspfix, hasEspfixExit, describeUserSegmentsCase, ESPFIX_PROPERTY, ESPFIX_RUNS, type UserSegmentsResult, type UserSegmentsReport, type NestedFault } from "./espfix.js";
