import{a,b,c}from"./c-G7N7ARVM.js";import"./c-UPGWJUKT.js";export{a as Forgot,c as Reset,b as useLinkToken};
