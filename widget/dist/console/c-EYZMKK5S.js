import{a,b,c}from"./c-T3O3QMKB.js";import"./c-LOSVZ3O5.js";export{a as Forgot,c as Reset,b as useLinkToken};
