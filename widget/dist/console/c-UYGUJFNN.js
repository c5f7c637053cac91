import{a,b,c}from"./c-QLXDHMHL.js";import"./c-BWUJH4QK.js";export{a as Forgot,c as Reset,b as useLinkToken};
