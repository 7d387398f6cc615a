export { traceCase, PHASES, StackWindow, type PhaseName, type PhaseCapture, type CaseTrace, type StepRecord, type RunTrace, type RegChange, type MemWrite, type TraceOptions } from "./trace.js";
export { stackPicture, type StackPicture, type PhaseDiagram, type DiagramRow, type WordKind } from "./picture.js";
export { pictureText, phaseText } from "./text.js";
export { phaseSvg } from "./svg.js";
export { reportHtml, type ReportEntry } from "./html.js";
export { hardwareFrame, ptRegsFields } from "./frames.js";
