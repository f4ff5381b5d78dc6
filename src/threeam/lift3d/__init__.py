"""threeam.lift3d: 3D instance segmentation by lifting 2D masks onto a scan's mesh (docs/lift3d.md).

Modules: `config` (LiftConfig, presets), `scene` (frames + mesh adapters), `keyframes`,
`proposals` (the ProposalSource seam: mask generator or GT masks), `propagate` (the Tracker seam:
SAM 2 / 3AM sessions or GT masks), `backproject` (depth-checked lifting), `fragments`, `merge`,
`superpoints`, `scoring` (ranking confidence), `pipeline` (`lift_scene`), `must3r_geometry`
(RGB-only mode), `render` (PLY + PNG views), `runner` (the `threeam lift3d` outputs).
"""
